"""`V_auth` (seed `validation/ml.rs`): every model artefact in a block must pass the verifier.

ML(B) is the set of (aid, evidence) claims made by the block's `TxRegisterModel`s, deduplicated
by (aid, evidence_hash). A block with more than `max_artefacts_per_block` claims is invalid; the
rest are verified concurrently (at most `max_concurrency` at once) and the block passes only if
every claim passes.

**Unavailable is not invalid.** A verifier that cannot answer raises `MlUnavailable`; the block is
then neither accepted nor marked invalid, and the caller retries. Only an answered `ok=false`
makes a block invalid. Verdicts are cached: a verdict is a pure function of (aid, scheme_id,
evidence_hash, wm_profile, owner), which is exactly the cache key (`ArtefactClaim`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from authchain.chain.errors import ChainError
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.types import AccountId, Aid, EvidenceRef, Transaction, TxRegisterModel
from authchain.chain.validation.base import BlockReason, InvalidBlock


class MlUnavailable(ChainError):
    """The verifier could not answer (down, timeout, 5xx); says nothing about the artefact."""


@dataclass(frozen=True, slots=True)
class ArtefactClaim:
    """One watermark claim to verify; also the verdict cache key."""

    aid: Aid
    owner: AccountId
    evidence: EvidenceRef


@dataclass(frozen=True, slots=True)
class Verdict:
    """The verifier's answer (seed `VerifyResponse`, plus reason and p-value)."""

    ok: bool
    reason: str | None = None
    trigger_acc: float | None = None
    feat_dist: float | None = None
    logit_stat: float | None = None
    p_value: float | None = None
    latency_ms: float | None = None


class MlVerifier(Protocol):
    """What V_auth needs from an ML service."""

    async def verify(self, claim: ArtefactClaim) -> Verdict:
        """Verify one claim; raise `MlUnavailable` if no answer can be had."""
        ...


def get_claims(txs: Iterable[Transaction]) -> list[ArtefactClaim]:
    """ML(B): the block's registration claims, first per (aid, evidence_hash), in order."""
    claims: dict[tuple[Aid, bytes], ArtefactClaim] = {}
    for tx in txs:
        if isinstance(tx, TxRegisterModel):
            key = (tx.aid, bytes(tx.evidence.evidence_hash))
            claims.setdefault(key, ArtefactClaim(tx.aid, tx.owner, tx.evidence))
    return list(claims.values())


class MlValidity:
    """V_auth over an `MlVerifier`, with a bounded verdict cache and bounded concurrency."""

    def __init__(
        self,
        verifier: MlVerifier,
        *,
        max_artefacts_per_block: int,
        max_concurrency: int = 4,
        cache_size: int = 10_000,
        metrics: ChainMetrics | None = None,
    ) -> None:
        self.verifier = verifier
        self.max_artefacts_per_block = max_artefacts_per_block
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._cache: OrderedDict[ArtefactClaim, Verdict] = OrderedDict()
        self._cache_size = cache_size
        self._metrics = metrics

    async def verify_claim(self, claim: ArtefactClaim) -> Verdict:
        """One claim's verdict, from the cache or the verifier; raises MlUnavailable."""
        cached = self._cache.get(claim)
        if self._metrics:
            self._metrics.record_cache_lookup(cached is not None)
        if cached is not None:
            self._cache.move_to_end(claim)
            return cached
        async with self._semaphore:
            try:
                verdict = await self.verifier.verify(claim)
            except MlUnavailable:
                self._count("unavailable")
                raise
        self._count("ok" if verdict.ok else "failed")
        self._cache[claim] = verdict
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return verdict

    async def verify_claims(self, claims: Sequence[ArtefactClaim]) -> list[Verdict | MlUnavailable]:
        """Each claim's verdict, or the MlUnavailable it raised; all run concurrently."""
        started = time.perf_counter()
        results = await asyncio.gather(
            *(self.verify_claim(c) for c in claims), return_exceptions=True
        )
        if self._metrics and claims:
            self._metrics.ml_auth_seconds.observe(time.perf_counter() - started)
        out: list[Verdict | MlUnavailable] = []
        for result in results:
            if isinstance(result, Verdict | MlUnavailable):
                out.append(result)
            else:  # a bug in a verifier, not an answer: let it surface
                raise result
        return out

    async def check_block(self, txs: Sequence[Transaction]) -> list[tuple[ArtefactClaim, Verdict]]:
        """V_auth for a block: InvalidBlock if a claim fails or the cap is exceeded;
        MlUnavailable if any claim got no answer; else every claim with its verdict."""
        claims = get_claims(txs)
        if len(claims) > self.max_artefacts_per_block:
            raise InvalidBlock(
                BlockReason.TOO_MANY_ARTEFACTS,
                f"{len(claims)} artefacts > max_artefacts_per_block {self.max_artefacts_per_block}",
            )
        results = await self.verify_claims(claims)
        for claim, result in zip(claims, results, strict=True):
            if isinstance(result, Verdict) and not result.ok:
                raise InvalidBlock(
                    BlockReason.ML_AUTH_FAILED, f"artefact {claim.aid}: {result.reason or 'failed'}"
                )
        unavailable = [r for r in results if isinstance(r, MlUnavailable)]
        if unavailable:
            raise MlUnavailable(f"{len(unavailable)} of {len(claims)} claims: {unavailable[0]}")
        return [(c, r) for c, r in zip(claims, results, strict=True) if isinstance(r, Verdict)]

    def _count(self, result: str) -> None:
        if self._metrics:
            self._metrics.verifier_calls.labels(result=result).inc()
