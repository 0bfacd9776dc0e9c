"""The service's verification pipeline: files -> hashes -> evidence -> model -> factors ->
floors -> derivative check -> verdict.

Each step that can fail ends the request with `ok=false` and a stable reason, never a 500:

    unknown_scheme, artefact_not_found, evidence_not_found,            (not uploaded yet)
    artefact_hash_mismatch, evidence_hash_mismatch, corrupt_evidence, scheme_mismatch,
    owner_mismatch, evidence_claim_mismatch, evidence_below_min_strength,
    corrupt_artefact, unsafe_artefact, unknown_architecture, architecture_not_allowed,
    bad_config, shape_mismatch,
    evidence_model_mismatch,
    trigger_acc_below_tau_input; trigger_p_above_floor; feat_dist_above_tau_feat;
    feat_p_above_floor; logit_stat_outside_band,
    sketch_mismatch,
    carries_registered_watermark

A dispute (`check_dispute`) reuses the same steps: the earlier artefact is verified against
the spare evidence at the claim floors alone (`spare_not_in_earlier` if it fails), then the
suspect's carry statistics under the spare key are held to the derivative floor
(`suspect_does_not_carry`).

`artefact_not_found` and `evidence_not_found` (also for an earlier registration's evidence)
mean "not available yet": the chain keeps the registration waiting, and nothing about them is
cached. Files are content-addressed and immutable, so rebuilt models (by aid), parsed evidence
(by hash), factor statistics (by aid and evidence hash) and derivative statistics (by candidate
aid and earlier evidence hash) are cached in bounded LRU caches; thresholds, floors and owners
are applied to cached statistics on every call.

Derivative detection: the candidate's declared function sketch must be its own
(`sketch_mismatch`: the chain picks the earlier registrations to check by it), then the
candidate is checked against every earlier registration in the request whose evidence fits its
input shape and class count, all trigger sets in one batched forward pass. The verdict is a
pure function of (candidate, evidence, sketch, the set of earlier registrations): they are
sorted by aid first, and every one is checked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

import blake3
import torch
from cachetools import LRUCache

from authchain.floors import Floors
from authchain.ml_service.artefact import LoadedModel, load_artefact
from authchain.ml_service.errors import MlServiceError
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import (
    DisputeRequest,
    DisputeResponse,
    RegisteredJson,
    VerifyRequest,
    VerifyResponse,
)
from authchain.ml_service.watermark.evidence import Evidence, parse_evidence
from authchain.ml_service.watermark.scheme import WatermarkScheme, get_scheme
from authchain.ml_service.watermark.sketch import (
    SKETCH_BITS,
    mismatched_bits,
    sketch_bytes,
    sketch_values,
)
from authchain.ml_service.watermark.verify import (
    CarryStats,
    FactorStats,
    Precision,
    Thresholds,
    compute_carry_stats,
    decide,
)
from authchain.wire import WmProfileJson

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A thread-safe `cachetools.LRUCache` (size 0: caches nothing)."""

    def __init__(self, size: int) -> None:
        self._data: LRUCache[K, V] | None = LRUCache(maxsize=size) if size > 0 else None
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        if self._data is None:
            return None
        with self._lock:
            return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        if self._data is not None:
            with self._lock:
                self._data[key] = value

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> tuple[V, bool]:
        """The cached value, or `compute()`'s (then cached); and whether it was cached."""
        value = self.get(key)
        if value is not None:
            return value, True
        value = compute()
        self.put(key, value)
        return value, False


@dataclass(frozen=True)
class Outcome:
    """A verification's result, before it becomes a `VerifyResponse`."""

    ok: bool
    reason: str | None
    detail: str | None
    stats: FactorStats | None
    cached: bool
    lineage: tuple[str, ...] = ()

    def to_response(self, latency_ms: float) -> VerifyResponse:
        s = self.stats
        return VerifyResponse(
            ok=self.ok,
            reason=self.reason,
            detail=self.detail,
            trigger_acc=s.trigger_acc if s else None,
            feat_dist=s.feat_dist if s else None,
            logit_stat=s.logit_stat if s else None,
            logit_stat_error=s.logit_stat_error if s else None,
            p_value=s.p_value if s else None,
            feat_p_value=s.feat_p_value if s else None,
            log2_p_value=s.log2_p_value if s else None,
            log2_feat_p_value=s.log2_feat_p_value if s else None,
            trigger_correct=s.trigger_correct if s else None,
            trigger_count=s.trigger_count if s else None,
            feat_matches=s.feat_matches if s else None,
            signature_bits=s.signature_bits if s else None,
            lineage=list(self.lineage),
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
        precision: Precision = "fast",
        model_cache_size: int = 8,
        stats_cache_size: int = 4096,
    ) -> None:
        self.store = store
        self.device = resolve_device(device)
        self.precision: Precision = precision
        self._models: BoundedCache[str, LoadedModel] = BoundedCache(model_cache_size)
        self._evidence: BoundedCache[str, Evidence] = BoundedCache(stats_cache_size)
        self._stats: BoundedCache[tuple[str, str], FactorStats] = BoundedCache(stats_cache_size)
        self._carry: BoundedCache[tuple[str, str], CarryStats] = BoundedCache(stats_cache_size * 4)
        self._sketches: BoundedCache[str, torch.Tensor] = BoundedCache(stats_cache_size)

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        """Answer one request (blocking: run it in a worker thread)."""
        started = time.perf_counter()
        outcome = self.check(request)
        response = outcome.to_response((time.perf_counter() - started) * 1000)
        log.info(
            "verify aid=%s evidence=%s ok=%s reason=%s cached=%s priors=%d latency_ms=%.1f",
            request.aid[:12], request.evidence_hash[:12], outcome.ok, outcome.reason,
            outcome.cached, len(request.registered), response.latency_ms,
        )  # fmt: skip
        return response

    def check(self, request: VerifyRequest) -> Outcome:
        """The outcome for `request`: the claim's own factors against its profile and the
        floors, then the derivative check against the earlier registrations."""
        floors = request.floors.to_floors()
        try:
            scheme, evidence, artefact_path = self._open_claim(request, floors)
            load = partial(self._load_model, request.aid, artefact_path)  # only on a cache miss
            stats_key = (request.aid, request.evidence_hash)
            stats, cached = self._stats.get_or_compute(
                stats_key, lambda: self._compute_stats(request, scheme, load(), evidence)
            )
            p = request.wm_profile
            profile = Thresholds(p.tau_input, p.tau_feat, p.logit_band_low, p.logit_band_high)
            reason, decided_on = decide(
                stats,
                profile,
                floors,
                lambda: self._compute_stats(request, scheme, load(), evidence, "float64"),
            )
            if decided_on is not stats:  # the fp32 interval straddled the band: now exact
                self._stats.put(stats_key, decided_on)
                stats, cached = decided_on, False
        except MlServiceError as exc:
            return Outcome(False, exc.reason, exc.detail, None, False)
        if reason is not None:
            detail = (
                f"trigger_acc={stats.trigger_acc} (tau_input {p.tau_input}) p=2^"
                f"{stats.log2_p_value:.1f} (floor 2^-{floors.trigger_p_log2}), "
                f"feat_dist={stats.feat_dist} (tau_feat {p.tau_feat}) p=2^"
                f"{stats.log2_feat_p_value:.1f} (floor 2^-{floors.feature_p_log2}), "
                f"logit_stat={stats.logit_stat} (band [{p.logit_band_low}, {p.logit_band_high}])"
            )
            return Outcome(False, reason, detail, stats, cached)
        owner = request.owner or evidence.owner
        try:
            if request.sketch is not None:
                self._check_sketch(request.aid, load, request.sketch)
            carried = self._carried(request, scheme, load, evidence, floors)
        except MlServiceError as exc:
            return Outcome(False, exc.reason, exc.detail, stats, cached)
        foreign = [(r, c) for r, c in carried if r.owner != owner]
        if foreign:
            prior, carry = foreign[0]
            others = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            detail = (
                f"the model carries the watermark of registered aid {prior.aid} (owner "
                f"{prior.owner}): {carry.describe()}{others}"
            )
            return Outcome(False, "carries_registered_watermark", detail, stats, cached)
        return Outcome(True, None, None, stats, cached, tuple(r.aid for r, _ in carried))

    def sketch(self, aid: str) -> bytes:
        """The stored artefact's function sketch (MlServiceError if it is not stored or
        cannot be loaded)."""
        path = self.store.find_artefact(aid)
        if path is None:
            raise MlServiceError("artefact_not_found", f"no artefact {aid} has been uploaded")
        return sketch_bytes(self._sketch_values(aid, partial(self._load_model, aid, path)))

    def _sketch_values(self, aid: str, load: Callable[[], LoadedModel]) -> torch.Tensor:
        def compute() -> torch.Tensor:
            loaded = load()
            shape, classes = tuple(loaded.arch.input_shape), loaded.config.num_classes
            try:
                return sketch_values(loaded.model, shape, classes, self.device)
            except RuntimeError as exc:
                raise MlServiceError(
                    "evidence_model_mismatch", f"the model cannot run: {exc!s:.200}"
                ) from exc

        values, _ = self._sketches.get_or_compute(aid, compute)
        return values

    def _check_sketch(self, aid: str, load: Callable[[], LoadedModel], declared: str) -> None:
        """The declared sketch is the artefact's, on every bit its values decide."""
        hint = f"declare the artefact's own (GET /artefacts/{aid}/sketch)"
        if not declared:
            raise MlServiceError("sketch_mismatch", f"the registration declares no sketch: {hint}")
        values = self._sketch_values(aid, load)
        wrong = mismatched_bits(values, bytes.fromhex(declared))
        if wrong:
            raise MlServiceError(
                "sketch_mismatch",
                f"the declared sketch differs from the artefact's in {len(wrong)} of "
                f"{SKETCH_BITS} bits (first: bit {wrong[0]}): {hint}",
            )

    def dispute(self, request: DisputeRequest) -> DisputeResponse:
        """Judge one dispute (blocking: run it in a worker thread)."""
        started = time.perf_counter()
        response = self.check_dispute(request)
        response.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        log.info(
            "dispute earlier=%s suspect=%s spare=%s ok=%s reason=%s latency_ms=%.1f",
            request.earlier_aid[:12], request.suspect_aid[:12],
            request.spare_evidence_hash[:12], response.ok, response.reason, response.latency_ms,
        )  # fmt: skip
        return response

    def check_dispute(self, request: DisputeRequest) -> DisputeResponse:
        """The earlier artefact carries the spare at the claim floors, and the suspect at the
        derivative floor; else the first rule that fails."""
        floors = request.floors.to_floors()
        try:
            scheme = self._scheme_of(request.spare_evidence_hash)
        except MlServiceError as exc:
            return DisputeResponse(ok=False, reason=exc.reason, detail=exc.detail, latency_ms=0)
        band = floors.max_logit_band
        earlier = self.check(
            VerifyRequest(
                aid=request.earlier_aid, scheme_id=scheme.scheme_id,
                evidence_hash=request.spare_evidence_hash,
                wm_profile=WmProfileJson(tau_input=0.0, tau_feat=1.0, logit_band_low=-band,
                                         logit_band_high=band),
                owner=request.owner, floors=request.floors,
            )
        )  # fmt: skip
        stats = earlier.stats
        answer = DisputeResponse(
            ok=False, latency_ms=0,
            earlier_log2_p_value=stats.log2_p_value if stats else None,
            earlier_log2_feat_p_value=stats.log2_feat_p_value if stats else None,
        )  # fmt: skip
        if not earlier.ok:
            unavailable = earlier.reason in ("artefact_not_found", "evidence_not_found")
            answer.reason = earlier.reason if unavailable else "spare_not_in_earlier"
            answer.detail = f"the earlier artefact under the spare key: {earlier.reason}: " + (
                earlier.detail or ""
            )
            return answer
        try:
            evidence = self._get_evidence(scheme, request.spare_evidence_hash, "")
            carry = self._carry_of(request.suspect_aid, request.spare_evidence_hash, evidence)
        except MlServiceError as exc:
            answer.reason, answer.detail = exc.reason, exc.detail
            return answer
        answer.suspect_log2_p_value = carry.log2_p_value()
        if not carry.carries(floors.derivative_p_log2):
            answer.reason = "suspect_does_not_carry"
            answer.detail = (
                f"the suspect under the spare key: {carry.describe()}, above the derivative "
                f"floor 2^-{floors.derivative_p_log2}"
            )
            return answer
        answer.ok = True
        answer.detail = f"the suspect carries the spare: {carry.describe()}"
        return answer

    def _scheme_of(self, evidence_hash: str) -> WatermarkScheme:
        """The scheme an evidence file names; the parsed file is cached for the steps after
        (MlServiceError if it is missing, altered or unreadable)."""
        cached = self._evidence.get(evidence_hash)
        if cached is None:
            cached = parse_evidence(self._evidence_bytes(evidence_hash, ""))
            self._evidence.put(evidence_hash, cached)
        scheme = get_scheme(cached.scheme_id)
        if scheme is None:
            raise MlServiceError("unknown_scheme", f"scheme {cached.scheme_id!r} is not supported")
        return scheme

    def _carry_of(self, aid: str, evidence_hash: str, evidence: Evidence) -> CarryStats:
        """How strongly the artefact `aid` carries `evidence`'s watermark (cached)."""
        cached = self._carry.get((aid, evidence_hash))
        if cached is not None:
            return cached
        path = self.store.find_artefact(aid)
        if path is None:
            raise MlServiceError("artefact_not_found", f"no artefact {aid} has been uploaded")
        loaded = self._load_model(aid, path)
        if (
            tuple(loaded.arch.input_shape) != tuple(evidence.input_shape)
            or loaded.config.num_classes != evidence.num_classes
        ):
            raise MlServiceError(
                "evidence_model_mismatch",
                "the suspect's input shape or classes differ from the spare evidence's",
            )
        (carry,) = self._compute_carries(loaded, [evidence])
        self._carry.put((aid, evidence_hash), carry)
        return carry

    def _compute_carries(self, loaded: LoadedModel, priors: list[Evidence]) -> list[CarryStats]:
        """`compute_carry_stats` on this service's device; a model that cannot run on the
        priors' inputs is `evidence_model_mismatch`."""
        try:
            return compute_carry_stats(loaded.model, priors, self.device, self.precision)
        except RuntimeError as exc:
            raise MlServiceError(
                "evidence_model_mismatch", f"the model cannot run: {exc!s:.200}"
            ) from exc

    def _open_claim(
        self, request: VerifyRequest, floors: Floors
    ) -> tuple[WatermarkScheme, Evidence, Path]:
        """Scheme, evidence (checked against the claim and the floors) and artefact path."""
        scheme = get_scheme(request.scheme_id)
        if scheme is None:
            raise MlServiceError("unknown_scheme", f"scheme {request.scheme_id!r} is not supported")
        artefact_path = self.store.find_artefact(request.aid)
        if artefact_path is None:
            raise MlServiceError(
                "artefact_not_found", f"no artefact {request.aid} has been uploaded"
            )
        evidence = self._get_evidence(scheme, request.evidence_hash, "")
        if evidence.scheme_id != request.scheme_id:
            raise MlServiceError("scheme_mismatch", f"the evidence is for {evidence.scheme_id}")
        if request.owner is not None and evidence.owner != request.owner:
            raise MlServiceError(
                "owner_mismatch",
                f"the evidence is bound to owner {evidence.owner}, not {request.owner}",
            )
        for name in ("trigger_count", "signature_bits", "num_classes"):
            claimed, actual = getattr(request, name), getattr(evidence, name)
            if claimed is not None and claimed != actual:
                raise MlServiceError(
                    "evidence_claim_mismatch",
                    f"{name}: the claim states {claimed}, the evidence has {actual}",
                )
        if evidence.trigger_count < floors.min_trigger_count:
            raise MlServiceError(
                "evidence_below_min_strength",
                f"trigger_count {evidence.trigger_count} < the chain's minimum "
                f"{floors.min_trigger_count}",
            )
        if evidence.signature_bits < floors.min_signature_bits:
            raise MlServiceError(
                "evidence_below_min_strength",
                f"signature_bits {evidence.signature_bits} < the chain's minimum "
                f"{floors.min_signature_bits}",
            )
        return scheme, evidence, artefact_path

    def _compute_stats(
        self,
        request: VerifyRequest,
        scheme: WatermarkScheme,
        loaded: LoadedModel,
        evidence: Evidence,
        precision: Precision | None = None,
    ) -> FactorStats:
        """The claim's statistics; in the same forward pass, the carry statistics of the
        earlier registrations the derivative check will need (cached for it)."""
        priors = self._uncached_priors(request, scheme, evidence) if precision is None else []
        try:
            stats, carries = scheme.compute_stats(
                loaded.model,
                loaded.arch.input_shape,
                evidence,
                self.device,
                precision or self.precision,
                [e for _, e in priors],
            )
        except RuntimeError as exc:  # e.g. a model that cannot run on these inputs
            raise MlServiceError(
                "evidence_model_mismatch", f"the model cannot run: {exc!s:.200}"
            ) from exc
        for (prior, _), carry in zip(priors, carries, strict=True):
            self._carry.put((request.aid, prior.evidence_hash), carry)
        return stats

    def _fitting_priors(
        self, request: VerifyRequest, scheme: WatermarkScheme, evidence: Evidence
    ) -> list[tuple[RegisteredJson, Evidence]]:
        """The earlier registrations (aid order) whose evidence fits the candidate's input
        shape and classes; MlServiceError if one's evidence is unavailable."""
        fitting: list[tuple[RegisteredJson, Evidence]] = []
        for prior in sorted(request.registered, key=lambda r: (r.aid, r.evidence_hash)):
            if prior.aid == request.aid:
                continue
            prior_evidence = self._get_evidence(scheme, prior.evidence_hash, prior.aid)
            if (
                prior_evidence.input_shape == evidence.input_shape
                and prior_evidence.num_classes == evidence.num_classes
            ):
                fitting.append((prior, prior_evidence))
        return fitting

    def _uncached_priors(
        self, request: VerifyRequest, scheme: WatermarkScheme, evidence: Evidence
    ) -> list[tuple[RegisteredJson, Evidence]]:
        """Fitting priors without cached carry statistics, to batch into the claim's pass
        (none if some prior's evidence is missing: `_carried` reports that, after the
        claim's own factors)."""
        try:
            fitting = self._fitting_priors(request, scheme, evidence)
        except MlServiceError:
            return []
        return [
            (prior, ev)
            for prior, ev in fitting
            if self._carry.get((request.aid, prior.evidence_hash)) is None
        ]

    def _carried(
        self,
        request: VerifyRequest,
        scheme: WatermarkScheme,
        load: Callable[[], LoadedModel],
        evidence: Evidence,
        floors: Floors,
    ) -> list[tuple[RegisteredJson, CarryStats]]:
        """The earlier registrations whose watermark the candidate carries, in aid order."""
        fitting = self._fitting_priors(request, scheme, evidence)
        found: dict[str, CarryStats] = {}
        missing: list[tuple[RegisteredJson, Evidence]] = []
        for prior, prior_evidence in fitting:
            cached = self._carry.get((request.aid, prior.evidence_hash))
            if cached is None:
                missing.append((prior, prior_evidence))
            else:
                found[prior.evidence_hash] = cached
        if missing:
            computed = self._compute_carries(load(), [e for _, e in missing])
            for (prior, _), carry in zip(missing, computed, strict=True):
                self._carry.put((request.aid, prior.evidence_hash), carry)
                found[prior.evidence_hash] = carry
        return [
            (prior, found[prior.evidence_hash])
            for prior, _ in fitting
            if found[prior.evidence_hash].carries(floors.derivative_p_log2)
        ]

    def _get_evidence(self, scheme: WatermarkScheme, evidence_hash: str, of_aid: str) -> Evidence:
        """Parsed evidence by hash (cached); `of_aid` names the registration it belongs to."""
        cached = self._evidence.get(evidence_hash)
        if cached is not None:
            return cached
        evidence = scheme.parse_evidence(self._evidence_bytes(evidence_hash, of_aid))
        self._evidence.put(evidence_hash, evidence)
        return evidence

    def _evidence_bytes(self, evidence_hash: str, of_aid: str) -> bytes:
        """A stored evidence file's bytes, checked against its hash; `of_aid` names the
        registration it belongs to (MlServiceError if it is missing or altered)."""
        whose = f" (of registered aid {of_aid})" if of_aid else ""
        path = self.store.find_evidence(evidence_hash)
        if path is None:
            raise MlServiceError(
                "evidence_not_found", f"no evidence {evidence_hash}{whose} has been uploaded"
            )
        data = path.read_bytes()
        if blake3.blake3(data).hexdigest() != evidence_hash:
            raise MlServiceError(
                "evidence_hash_mismatch", f"the stored evidence{whose} does not hash to its id"
            )
        return data

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
