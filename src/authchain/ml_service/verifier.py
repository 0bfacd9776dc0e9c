"""The service's verification pipeline: files -> hashes -> evidence -> model -> factors -> verdict.

Each step that can fail ends the request with `ok=false` and a stable reason, never a 500:

    unknown_scheme, artefact_not_found, evidence_not_found,
    artefact_hash_mismatch, evidence_hash_mismatch, corrupt_evidence, scheme_mismatch,
    owner_mismatch, corrupt_artefact, unsafe_artefact, unknown_architecture, bad_config,
    shape_mismatch, evidence_model_mismatch,
    trigger_acc_below_tau_input; feat_dist_above_tau_feat; logit_stat_outside_band

Files are content-addressed and immutable, so rebuilt models (by aid) and factor statistics
(by aid, evidence hash and owner) are cached; thresholds are applied to cached statistics on
every call. A missing file is never cached: it may be uploaded later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import blake3
import torch

from authchain.ml_service.artefact import LoadedModel, load_artefact
from authchain.ml_service.errors import MlServiceError
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import VerifyRequest, VerifyResponse
from authchain.ml_service.watermark.scheme import get_scheme
from authchain.ml_service.watermark.verify import (
    FactorStats,
    Thresholds,
    judge,
)

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A small thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


@dataclass(frozen=True)
class Outcome:
    """A verification's result, before it becomes a `VerifyResponse`."""

    ok: bool
    reason: str | None
    detail: str | None
    stats: FactorStats | None
    cached: bool

    def to_response(self, latency_ms: float) -> VerifyResponse:
        s = self.stats
        return VerifyResponse(
            ok=self.ok,
            reason=self.reason,
            detail=self.detail,
            trigger_acc=s.trigger_acc if s else None,
            feat_dist=s.feat_dist if s else None,
            logit_stat=s.logit_stat if s else None,
            p_value=s.p_value if s else None,
            latency_ms=round(latency_ms, 3),
        )


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when torch sees a GPU, else `cpu`."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Verifier:
    """Verifies requests against a `FilesystemStore`."""

    def __init__(
        self,
        store: FilesystemStore,
        *,
        device: str = "cpu",
        model_cache_size: int = 8,
        stats_cache_size: int = 4096,
    ) -> None:
        self.store = store
        self.device = resolve_device(device)
        self._models: LruCache[str, LoadedModel] = LruCache(model_cache_size)
        self._stats: LruCache[tuple[str, str, str | None], FactorStats] = LruCache(stats_cache_size)

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        """Answer one request (blocking: run it in a worker thread)."""
        started = time.perf_counter()
        outcome = self.check(request)
        response = outcome.to_response((time.perf_counter() - started) * 1000)
        log.info(
            "verify aid=%s evidence=%s ok=%s reason=%s cached=%s latency_ms=%.1f",
            request.aid[:12], request.evidence_hash[:12], outcome.ok, outcome.reason,
            outcome.cached, response.latency_ms,
        )  # fmt: skip
        return response

    def check(self, request: VerifyRequest) -> Outcome:
        """The outcome for `request`: statistics from the cache or computed, then thresholds."""
        try:
            stats, cached = self._get_stats(request)
        except MlServiceError as exc:
            return Outcome(False, exc.reason, exc.detail, None, False)
        p = request.wm_profile
        reason = judge(
            stats, Thresholds(p.tau_input, p.tau_feat, p.logit_band_low, p.logit_band_high)
        )
        detail = None
        if reason is not None:
            detail = (
                f"trigger_acc={stats.trigger_acc} (tau_input {p.tau_input}), "
                f"feat_dist={stats.feat_dist} (tau_feat {p.tau_feat}), "
                f"logit_stat={stats.logit_stat} (band [{p.logit_band_low}, {p.logit_band_high}])"
            )
        return Outcome(reason is None, reason, detail, stats, cached)

    def _get_stats(self, request: VerifyRequest) -> tuple[FactorStats, bool]:
        scheme = get_scheme(request.scheme_id)
        if scheme is None:
            raise MlServiceError("unknown_scheme", f"scheme {request.scheme_id!r} is not supported")
        artefact_path = self.store.find_artefact(request.aid)
        if artefact_path is None:
            raise MlServiceError(
                "artefact_not_found", f"no artefact {request.aid} has been uploaded"
            )
        evidence_path = self.store.find_evidence(request.evidence_hash)
        if evidence_path is None:
            raise MlServiceError(
                "evidence_not_found", f"no evidence {request.evidence_hash} has been uploaded"
            )
        key = (request.aid, request.evidence_hash, request.owner)
        cached = self._stats.get(key)
        if cached is not None:
            return cached, True

        evidence_bytes = evidence_path.read_bytes()
        if blake3.blake3(evidence_bytes).hexdigest() != request.evidence_hash:
            raise MlServiceError(
                "evidence_hash_mismatch", "the stored evidence does not hash to its id"
            )
        evidence = scheme.parse_evidence(evidence_bytes)
        if evidence.scheme_id != request.scheme_id:
            raise MlServiceError("scheme_mismatch", f"the evidence is for {evidence.scheme_id}")
        if request.owner is not None and evidence.owner != request.owner:
            raise MlServiceError(
                "owner_mismatch",
                f"the evidence is bound to owner {evidence.owner}, not {request.owner}",
            )
        loaded = self._load_model(request.aid, artefact_path)
        try:
            stats = scheme.compute_stats(
                loaded.model, loaded.arch.input_shape, evidence, self.device
            )
        except RuntimeError as exc:  # e.g. a model that cannot run on these inputs
            raise MlServiceError(
                "evidence_model_mismatch", f"the model cannot run: {exc!s:.200}"
            ) from exc
        self._stats.put(key, stats)
        return stats, False

    def _load_model(self, aid: str, path: Path) -> LoadedModel:
        cached = self._models.get(aid)
        if cached is not None:
            return cached
        data = path.read_bytes()
        if blake3.blake3(data).hexdigest() != aid:
            raise MlServiceError(
                "artefact_hash_mismatch", "the stored artefact does not hash to its aid"
            )
        loaded = load_artefact(path)
        self._models.put(aid, loaded)
        return loaded
