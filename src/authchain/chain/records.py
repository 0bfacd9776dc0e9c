"""Node-local records: why this node dropped a tx (rejection records, `GET /txs/{hash}` →
`rejected`), what V_auth said about each claim it judged (claim records, `GET /claims`), and
what it measured for each committed dispute (`dispute_stats`, in `GET /disputes/{tx}`).

They are this validator's observations, not consensus state: they live in their own store
columns (`rejected`, `claims`), never enter the app hash, and are pruned. Strangers decide how
many there are, so they are bounded: the rejected ones of the last `rejections_kept_blocks`
blocks are kept, at most `max_rejections` of each kind (the newest). The claim records are
also kept in memory in a `ClaimIndex`, built from the column at start and updated after each
write, so a claims query walks only the lists it names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import msgspec

from authchain.chain import codec
from authchain.chain.claims import ClaimIndex, ClaimRecord, decode_claim, encode_claim
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.pool import TxRejection
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.types import Height, TxHash
from authchain.chain.validation.ml import Verdict

log = logging.getLogger(__name__)

PRUNE_EVERY = 64
"""Blocks between two prunings."""
DISPUTE_STATS_PREFIX = b"dispute-stats/"
"""Meta-column key prefix of a committed dispute's statistics (one per dispute in a block:
each paid its fee, so strangers cannot grow them for free)."""


class DisputeStats(msgspec.Struct, frozen=True, kw_only=True):
    """What this node's V_auth measured for a committed dispute (local, not consensus state:
    the verdict is in state, the p-values are this validator's measurement of it)."""

    earlier_log2_p_value: float | None = None
    """The earlier artefact under the spare key: its trigger p-value (log2)."""
    earlier_log2_feat_p_value: float | None = None
    """... and its signature p-value (log2)."""
    suspect_log2_p_value: float | None = None
    """The suspect under the spare key: both factors together (Fisher, log2)."""
    detail: str = ""


def dispute_stats(verdict: Verdict) -> DisputeStats:
    """The statistics a dispute's verdict carries (non-finite ones as None)."""

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return DisputeStats(
        earlier_log2_p_value=finite(verdict.log2_p_value),
        earlier_log2_feat_p_value=finite(verdict.log2_feat_p_value),
        suspect_log2_p_value=finite(verdict.suspect_log2_p_value),
        detail=(verdict.detail or "")[:1000],
    )


def encode_dispute_stats(stats: Mapping[TxHash, DisputeStats]) -> dict[bytes, bytes | None]:
    """Dispute statistics as the store's meta column holds them."""
    return {DISPUTE_STATS_PREFIX + h: msgspec.msgpack.encode(s) for h, s in stats.items()}


class NodeRecords:
    """The rejection and claim records over a `BlockStore`."""

    def __init__(self, store: BlockStore, config: ConsensusConfig) -> None:
        self.store = store
        self.config = config
        self.claims = ClaimIndex(self._read_claims())
        """The claim records, indexed for the claims query."""

    def dispute_stats(self, tx_hash: TxHash) -> DisputeStats | None:
        """What this node measured for a committed dispute, if it judged it."""
        raw = self.store.get_meta(DISPUTE_STATS_PREFIX + tx_hash)
        if raw is None:
            return None
        try:
            return msgspec.msgpack.decode(raw, type=DisputeStats)
        except msgspec.DecodeError:
            log.warning("unreadable dispute statistics for %s", tx_hash.short())
            return None

    def rejection(self, tx_hash: TxHash) -> TxRejection | None:
        """Why a tx was dropped from the pool, if it was."""
        raw = self.store.get_rejection(tx_hash)
        return None if raw is None else codec.decode(raw, TxRejection)

    def write_dropped(
        self,
        dropped: Mapping[TxHash, TxRejection],
        claims: Mapping[TxHash, ClaimRecord],
        height: Height,
        pool_remove: Iterable[TxHash] = (),
    ) -> None:
        """Record pool txs dropped at `height` (and the claim records of the registrations
        among them) in one write, with the pool's removals of them."""
        self.store.commit(
            Commit(
                pool_remove=set(pool_remove),
                rejected={
                    h: codec.encode(msgspec.structs.replace(r, height=height))
                    for h, r in dropped.items()
                },
                claims=encode_claims(claims),
            )
        )
        self.index(claims)

    def index(self, claims: Mapping[TxHash, ClaimRecord]) -> None:
        """Index claim records the store now holds."""
        for tx_hash, record in claims.items():
            self.claims.put(tx_hash, record)

    def prune(self, height: Height) -> None:
        """Every `PRUNE_EVERY` blocks: drop the rejection records and rejected claims' records
        older than `rejections_kept_blocks`, and all but the newest `max_rejections`."""
        if height % PRUNE_EVERY:
            return
        rejections: list[tuple[int, TxHash]] = [
            (codec.decode(raw, TxRejection).height, tx_hash)
            for tx_hash, raw in self.store.iter_rejections()
        ]
        rejected = self.claims.find(status="rejected", limit=len(self.claims))
        claims = [(record.height, tx_hash) for tx_hash, record in rejected]
        stale_rejections = self._stale(rejections, height)
        stale_claims = self._stale(claims, height)
        if stale_rejections or stale_claims:
            self.store.commit(
                Commit(rejected=dict.fromkeys(stale_rejections), claims=dict.fromkeys(stale_claims))
            )
            for tx_hash in stale_claims:
                self.claims.remove(tx_hash)
            log.info("pruned %d old rejection records and %d rejected claims",
                     len(stale_rejections), len(stale_claims))  # fmt: skip

    def _stale(self, records: list[tuple[int, TxHash]], height: Height) -> list[TxHash]:
        oldest = height - self.config.rejections_kept_blocks
        records.sort(reverse=True)
        keep = self.config.max_rejections
        return [h for i, (at, h) in enumerate(records) if at < oldest or i >= keep]

    def _read_claims(self) -> Iterable[tuple[TxHash, ClaimRecord]]:
        for tx_hash, raw in self.store.iter_claims():
            try:
                yield tx_hash, decode_claim(raw)
            except msgspec.DecodeError:
                log.warning("skipping an unreadable claim record %s", tx_hash.short())


def encode_claims(claims: Mapping[TxHash, ClaimRecord]) -> dict[TxHash, bytes | None]:
    """Claim records as the store's `claims` column holds them."""
    return {h: encode_claim(r) for h, r in claims.items()}
