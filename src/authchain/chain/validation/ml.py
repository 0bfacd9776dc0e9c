"""`V_auth` (seed `validation/ml.rs`): every model artefact in a block must pass the verifier.

ML(B) is the set of claims made by the block's `TxRegisterModel`s (at most
`max_artefacts_per_block` of them: `validation/pipeline.py`, which also says when V_auth runs in
each phase). They are verified concurrently, at most `max_concurrency` at once, and a
registration is applied only if its claim passes.

Each claim is also checked against the registrations already in the parent state (derivative
detection, DESIGN.md §5): a candidate that carries an earlier registration's watermark fails
with `carries_registered_watermark`, unless its owner owns that registration; then the verdict
names the earlier aid as lineage, which the block records in `ArtefactMetadata.parents`.

**Unavailable is not invalid.** A verifier that cannot answer raises `MlUnavailable`; so does an
answer that says a file is not uploaded yet (`artefact_not_found`, `evidence_not_found`: raised
as `FilesUnavailable`). The block is then neither accepted nor marked invalid, and the caller
retries. Only an answered definitive `ok=false` fails a registration. Verdicts are cached: a
verdict is a pure function of (aid, scheme_id, evidence_hash, wm_profile, strength, owner, the
earlier registrations), which is exactly the cache key (`ArtefactClaim.cache_key`, where a digest
stands for the earlier registrations); the floors are fixed by genesis. "Not uploaded yet" is
never cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cachetools import LRUCache

from authchain.chain import codec
from authchain.chain.errors import ChainError
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.types import (
    AccountId,
    Aid,
    ArtefactMetadata,
    EvidenceHash,
    EvidenceRef,
    Hash256,
    TxDispute,
    TxRegisterModel,
)

log = logging.getLogger(__name__)

UNAVAILABLE_REASONS = frozenset({"artefact_not_found", "evidence_not_found"})
"""Answers that say a file has not been uploaded (yet): unavailable, never invalid."""


class MlUnavailable(ChainError):
    """The verifier could not answer (down, timeout, 5xx); says nothing about the artefact."""


class FilesUnavailable(MlUnavailable):
    """The verifier answered that a file it needs is not uploaded yet; `.reason` says which."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Registration:
    """An earlier registration that a candidate is checked against (derivative detection)."""

    aid: Aid
    owner: AccountId
    evidence_hash: EvidenceHash


@dataclass(frozen=True, slots=True)
class ArtefactClaim:
    """One watermark claim to verify; also the verdict cache key."""

    aid: Aid
    owner: AccountId
    evidence: EvidenceRef
    registered: tuple[Registration, ...] = ()
    """The parent state's registrations the candidate is checked against: those of the same
    class count with the nearest sketches (`state.nearest_registrations`), in aid order."""

    @property
    def cache_key(self) -> tuple[Aid, AccountId, EvidenceRef, Hash256]:
        """What the verdict is a function of, with the earlier registrations as a digest (so a
        cached verdict does not keep the whole registration list alive)."""
        registered = codec.encode([(r.aid, r.owner, r.evidence_hash) for r in self.registered])
        return self.aid, self.owner, self.evidence, codec.hash_bytes(registered)


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
    feat_p_value: float | None = None
    log2_p_value: float | None = None
    log2_feat_p_value: float | None = None
    detail: str | None = None
    lineage: tuple[Aid, ...] = ()
    """Earlier registrations of the same owner whose watermark the candidate carries."""
    suspect_log2_p_value: float | None = None
    """A dispute's: the suspect under the spare key, both factors together (log2). For a
    dispute, `log2_p_value` and `log2_feat_p_value` are the earlier artefact's under it."""


@dataclass(frozen=True, slots=True)
class DisputeClaim:
    """A dispute to judge (`TxDispute`): does the earlier artefact carry the spare watermark
    whose evidence is `spare_evidence_hash` at the claim floors, bound to `owner`, and does
    the suspect carry it at the derivative floor? A pure function of these four: the cache
    key."""

    owner: AccountId
    earlier_aid: Aid
    suspect_aid: Aid
    spare_evidence_hash: EvidenceHash

    @property
    def cache_key(self) -> tuple[str, AccountId, Aid, Aid, EvidenceHash]:
        return "dispute", self.owner, self.earlier_aid, self.suspect_aid, self.spare_evidence_hash


Claim = ArtefactClaim | DisputeClaim
"""What V_auth judges: a registration's claim, or a dispute."""


class MlVerifier(Protocol):
    """What V_auth needs from an ML service."""

    async def verify(self, claim: Claim) -> Verdict:
        """Judge one claim or dispute; raise `MlUnavailable` if no answer can be had."""
        ...


def make_claim(tx: TxRegisterModel, registered: Iterable[ArtefactMetadata]) -> ArtefactClaim:
    """The claim `tx` makes, to be checked against the earlier `registered` artefacts."""
    classes = tx.evidence.num_classes
    earlier = tuple(
        Registration(m.aid, m.owner, m.evidence.evidence_hash)
        for m in sorted(registered, key=lambda m: bytes(m.aid))
        if m.evidence.num_classes == classes and m.aid != tx.aid
    )
    return ArtefactClaim(tx.aid, tx.owner, tx.evidence, earlier)


def dispute_claim(tx: TxDispute) -> DisputeClaim:
    """What V_auth judges for a dispute."""
    return DisputeClaim(tx.owner, tx.earlier_aid, tx.suspect_aid, tx.spare_evidence_hash)


class MlValidity:
    """V_auth over an `MlVerifier`, with a bounded verdict cache and bounded concurrency."""

    def __init__(
        self,
        verifier: MlVerifier,
        *,
        max_concurrency: int = 4,
        cache_size: int = 10_000,
        metrics: ChainMetrics | None = None,
    ) -> None:
        self.verifier = verifier
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._cache: LRUCache[tuple[object, ...], Verdict] = LRUCache(maxsize=cache_size)
        self._metrics = metrics

    async def verify_claim(self, claim: Claim) -> Verdict:
        """One claim's verdict, from the cache or the verifier; raises MlUnavailable."""
        key = claim.cache_key
        cached = self._cache.get(key)
        if self._metrics:
            self._metrics.record_cache_lookup(cached is not None)
        if cached is not None:
            return cached
        async with self._semaphore:
            try:
                verdict = await self.verifier.verify(claim)
            except MlUnavailable:
                self._count("unavailable")
                raise
        if not verdict.ok and verdict.reason in UNAVAILABLE_REASONS:
            self._count("unavailable")
            raise FilesUnavailable(verdict.reason, verdict.detail or "not uploaded yet")
        self._count("ok" if verdict.ok else "failed")
        self._cache[key] = verdict
        return verdict

    async def verify_claims(
        self, claims: Sequence[Claim], *, budget_secs: float | None = None
    ) -> list[Verdict | MlUnavailable]:
        """Each claim's verdict, or the MlUnavailable it raised; all run concurrently. A claim
        with no verdict within `budget_secs` is MlUnavailable (the verifier keeps working on
        it, and caches what it computes, so a later try is quicker)."""
        started = time.perf_counter()

        async def within_budget(claim: Claim) -> Verdict:
            try:
                return await asyncio.wait_for(self.verify_claim(claim), budget_secs)
            except TimeoutError:
                self._count("unavailable")
                raise MlUnavailable(f"no verdict within {budget_secs:g} s") from None

        results = await asyncio.gather(*map(within_budget, claims), return_exceptions=True)
        if self._metrics and claims:
            self._metrics.ml_auth_seconds.observe(time.perf_counter() - started)
        out: list[Verdict | MlUnavailable] = []
        for result in results:
            if isinstance(result, Verdict | MlUnavailable):
                out.append(result)
            else:  # a bug in a verifier, not an answer: let it surface
                raise result
        return out

    def _count(self, result: str) -> None:
        if self._metrics:
            self._metrics.verifier_calls.labels(result=result).inc()


def get_lineage(claim: ArtefactClaim, verdict: Verdict) -> tuple[Aid, ...]:
    """The passing verdict's lineage: earlier registrations of the claim's own owner only (a
    verifier that names anything else is wrong, and is not believed)."""
    owned = {r.aid for r in claim.registered if r.owner == claim.owner}
    stray = [aid for aid in verdict.lineage if aid not in owned]
    if stray:
        log.warning("verifier named %s as lineage of %s: not an earlier registration of its owner",
                    stray[0], claim.aid)  # fmt: skip
    return tuple(sorted({aid for aid in verdict.lineage if aid in owned}, key=bytes))


def verdict_text(v: Verdict) -> str:
    """A failed verdict in one line: the verifier's reason and its statistics."""
    names = ("trigger_acc", "feat_dist", "logit_stat", "p_value", "feat_p_value")
    parts = [f"{n}={getattr(v, n):.6g}" for n in names if getattr(v, n) is not None]
    text = f"V_auth failed: {v.reason or 'no reason given'}"
    if v.detail:  # the verifier's own account names every statistic
        return f"{text}: {v.detail:.500}"
    return text + (f" ({', '.join(parts)})" if parts else "")
