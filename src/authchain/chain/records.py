"""Node-local records: why this node dropped a tx (rejection records, `GET /txs/{hash}` →
`rejected`) and what V_auth said about each claim it judged (claim records, `GET /claims`).

They are this validator's observations, not consensus state: they live in their own store
columns (`rejected`, `claims`), never enter the app hash, and are pruned. Strangers decide how
many there are, so they are bounded: the rejected ones of the last `rejections_kept_blocks`
blocks are kept, at most `max_rejections` of each kind (the newest). The claim records are
also kept in memory in a `ClaimIndex`, built from the column at start and updated after each
write, so a claims query walks only the lists it names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import msgspec

from authchain.chain import codec
from authchain.chain.claims import ClaimIndex, ClaimRecord, decode_claim, encode_claim
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.pool import TxRejection
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.types import Height, TxHash

log = logging.getLogger(__name__)

PRUNE_EVERY = 64
"""Blocks between two prunings."""


class NodeRecords:
    """The rejection and claim records over a `BlockStore`."""

    def __init__(self, store: BlockStore, config: ConsensusConfig) -> None:
        self.store = store
        self.config = config
        self.claims = ClaimIndex(self._read_claims())
        """The claim records, indexed for the claims query."""

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
