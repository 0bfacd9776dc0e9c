"""`ConsensusEngine`: the embedded single-validator driver of the `Application`.

It drives the application's ABCI++ phases itself, in one process, with the seed's
proof-of-authority block format (a header the proposer signs, with tx_root and state_root):
- CheckTx: `submit_tx` -> `Application.check_tx`;
- PrepareProposal: `propose_block` asks the application for the txs (V_auth has run, failures
  are dropped with their reason, unavailable ones stay pooled), finalizes them to learn the
  state root, signs the header and imports its own block;
- ProcessProposal + FinalizeBlock + Commit: `import_block` checks the header (links,
  proposer and signature, size, tx_root), runs `Application.process_proposal`, finalizes the
  block, checks its state_root and commits block, state, tx index and pool removals in one
  atomic write.

There is one proposer, so there are no forks: a block must extend the tip. (Multi-validator
networks run the same application under CometBFT, whose BFT commits are final; neither driver
needs longest-chain fork choice or reorgs.)

The engine reads no clock: time comes in as `now_ms`. Its only I/O seam is the `MlVerifier`
behind `MlValidity`, which is why proposal and import are coroutines.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import LRUCache

from authchain.chain import codec, crypto
from authchain.chain.app import Application, ProposalLimits, TxRejection
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.pool import TxPool
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.errors import Rejected, StorageError
from authchain.chain.genesis import compute_genesis_block
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.state import Genesis, StateView
from authchain.chain.types import (
    Block,
    BlockHash,
    Hash256,
    Header,
    Transaction,
    TxHash,
)
from authchain.chain.validation.base import (
    MAX_CLOCK_DRIFT_MS,
    BlockReason,
    InvalidBlock,
    get_expected_proposer,
    validate_header,
)
from authchain.chain.validation.ml import MlUnavailable, MlValidity

log = logging.getLogger(__name__)

GENESIS_META = b"genesis"
INVALID_CACHE_SIZE = 1024


class ImportStatus(enum.StrEnum):
    """What `import_block` did with a block."""

    ACCEPTED = "accepted"  # it is the new tip
    KNOWN = "known"  # already stored
    DEFERRED = "deferred"  # ML service unavailable, or from the future: not invalid; retry
    INVALID = "invalid"
    ORPHAN = "orphan"  # does not extend the tip


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The outcome of importing one block."""

    status: ImportStatus
    block_hash: BlockHash
    reason: str | None = None


class ConsensusEngine:
    """Single-validator proof-of-authority driver over a `BlockStore`."""

    def __init__(
        self,
        store: BlockStore,
        genesis: Genesis,
        config: ConsensusConfig,
        ml: MlValidity,
        *,
        metrics: ChainMetrics | None = None,
    ) -> None:
        self.app = Application(store, genesis, config, ml, metrics=metrics)
        self.store = store
        self.genesis = genesis
        self.config = config
        self.ml = ml
        self.metrics = metrics
        self._invalid: LRUCache[Hash256, str] = LRUCache(maxsize=INVALID_CACHE_SIZE)
        """Blocks found invalid, by the hash of their header and signature."""
        self.genesis_hash: BlockHash
        """Hash of block 0; set (and checked against the store) by `_open_genesis`."""
        self._open_genesis()
        tip = store.tip()
        if tip is None:
            raise StorageError("store has no tip after genesis")
        self._tip = tip
        self._tip_header = self._header(tip)
        if self.app.height != self._tip_header.height:
            raise StorageError(
                f"application at height {self.app.height}, block store at "
                f"{self._tip_header.height}: the store was not written by this version"
            )
        self.app._update_gauges(self.height)

    # --- reads ------------------------------------------------------------------------------

    @property
    def pool(self) -> TxPool:
        return self.app.pool

    @property
    def tip(self) -> BlockHash:
        return self._tip

    @property
    def tip_header(self) -> Header:
        return self._tip_header

    @property
    def height(self) -> int:
        return self._tip_header.height

    def view(self) -> StateView:
        """A read view of the state at the tip."""
        return self.app.view()

    def get_rejection(self, tx_hash: TxHash) -> TxRejection | None:
        """Why a tx was dropped from the pool, if it was."""
        return self.app.records.rejection(tx_hash)

    # --- CheckTx ----------------------------------------------------------------------------

    def submit_tx(self, tx: Transaction) -> TxHash:
        """Admit `tx` to the pool, durably; raises InvalidTx or PoolRejected with the reason."""
        return self.app.check_tx(tx)

    async def submit_txs(self, txs: Sequence[Transaction]) -> list[TxHash | Rejected]:
        """Admit a batch (`Application.admit`): each tx's hash, or why it was not admitted."""
        return await self.app.admit(txs)

    # --- PrepareProposal --------------------------------------------------------------------

    async def propose_block(self, key: crypto.KeyPair, now_ms: int) -> ImportResult | None:
        """Build, sign and import the next block if it is `key`'s turn; None if nothing to do."""
        height = self.height + 1
        if get_expected_proposer(self.genesis.validators, height).account != key.account:
            return None
        # The block's size is its header, its signature and its txs (each with a few bytes of
        # framing): the txs get what the other two leave of max_block_size_bytes.
        envelope = Block(self._tip_header, (), b"\0" * crypto.signature_size(key.scheme))
        limits = ProposalLimits(
            max_txs=self.config.max_block_txs,
            max_bytes=self.config.max_block_size_bytes - len(codec.encode(envelope)) - 8,
            tx_overhead=0,
        )
        proposal = await self.app.prepare_proposal(
            self.app.pool.candidates(), height, key.account, limits
        )
        txs = proposal.txs
        if not txs and not self.config.allow_empty_blocks:
            return None
        started = time.perf_counter()
        # Our own block is executed once: finalize gives the state root we sign, and the same
        # finalized writes are committed (import_block re-executes only others' blocks).
        finalized = await self.app.finalize_block(txs, height, key.account, strict=True)
        header = Header(
            parent=self._tip,
            height=height,
            timestamp=max(now_ms, self._tip_header.timestamp + 1),
            proposer=key.account,
            tx_root=codec.compute_tx_root(txs),
            state_root=finalized.app_hash,
        )
        block = crypto.sign_block(Block(header, tuple(txs)), key, self.genesis.chain_id)
        block_hash = codec.compute_block_hash(header)
        try:
            validate_header(block, self._tip, self._tip_header, self.genesis, self.config, now_ms)
        except InvalidBlock as exc:
            self.app.discard()
            return self._invalid_block(codec.hash_bytes(b"own" + block_hash), block_hash, exc)
        return await self._commit(block, block_hash, started)

    # --- ProcessProposal + FinalizeBlock + Commit -------------------------------------------

    async def import_block(self, block: Block, now_ms: int) -> ImportResult:
        """Validate `block` and commit it as the new tip, or say why not."""
        block_hash = codec.compute_block_hash(block.header)
        seen_as = codec.hash_bytes(codec.encode((block_hash, block.signature)))
        if seen_as in self._invalid:
            return ImportResult(ImportStatus.INVALID, block_hash, self._invalid[seen_as])
        if self.store.has_block(block_hash):
            return ImportResult(ImportStatus.KNOWN, block_hash)
        if block.header.parent != self._tip:
            return ImportResult(
                ImportStatus.ORPHAN, block_hash, f"does not extend the tip {self._tip.short()}"
            )
        if block.header.timestamp > now_ms + MAX_CLOCK_DRIFT_MS:  # maybe our clock is behind
            why = f"timestamp {block.header.timestamp} is more than {MAX_CLOCK_DRIFT_MS} ms ahead"
            return ImportResult(ImportStatus.DEFERRED, block_hash, f"from_the_future: {why}")
        started = time.perf_counter()
        try:
            validate_header(block, self._tip, self._tip_header, self.genesis, self.config, now_ms)
            height, proposer = block.header.height, block.header.proposer
            await self.app.process_proposal(block.txs, height, proposer)
            finalized = await self.app.finalize_block(block.txs, height, proposer, strict=True)
            if block.header.state_root != finalized.app_hash:
                self.app.discard()
                raise InvalidBlock(
                    BlockReason.BAD_STATE_ROOT, f"state_root is not {finalized.app_hash}"
                )
        except InvalidBlock as exc:
            self.app.discard()
            return self._invalid_block(seen_as, block_hash, exc)
        except MlUnavailable as exc:
            self.app.discard()
            log.warning("block %s deferred: ML service unavailable: %s", block_hash.short(), exc)
            if self.metrics:
                self.metrics.blocks_retried.inc()
            return ImportResult(ImportStatus.DEFERRED, block_hash, f"ml_unavailable: {exc}")
        return await self._commit(block, block_hash, started)

    async def _commit(self, block: Block, block_hash: BlockHash, started: float) -> ImportResult:
        """Commit the finalized `block` as the new tip."""
        await self.app.pool.writes_idle()
        if self.metrics:
            self.metrics.block_validation_seconds.observe(time.perf_counter() - started)
        self.app.commit(
            Commit(blocks=[block], heights={block.header.height: block_hash}, tip=block_hash)
        )
        self._tip = block_hash
        self._tip_header = block.header
        log.info("block %d %s: %d txs", block.header.height, block_hash.short(), len(block.txs))
        return ImportResult(ImportStatus.ACCEPTED, block_hash)

    def _invalid_block(
        self, seen_as: Hash256, block_hash: BlockHash, exc: InvalidBlock
    ) -> ImportResult:
        self._invalid[seen_as] = str(exc)
        log.warning("block %s invalid: %s", block_hash.short(), exc)
        if self.metrics:
            self.metrics.blocks_rejected.labels(reason=exc.reason).inc()
            if exc.reason in ("ml_auth_failed", "too_many_artefacts"):
                self.metrics.blocks_rejected_ml.inc()
        return ImportResult(ImportStatus.INVALID, block_hash, str(exc))

    # --- helpers ----------------------------------------------------------------------------

    def _open_genesis(self) -> None:
        block = compute_genesis_block(self.genesis, self.config)
        block_hash = self.genesis_hash = codec.compute_block_hash(block.header)
        stored = self.store.get_meta(GENESIS_META)
        if stored is None:
            if self.store.tip() is not None:
                raise StorageError("store has blocks but no genesis record")
            self.app.init_chain(
                Commit(
                    blocks=[block],
                    heights={0: block_hash},
                    meta={GENESIS_META: bytes(block_hash)},
                    tip=block_hash,
                )
            )
        elif stored != block_hash:
            raise StorageError(
                f"this database belongs to another chain (genesis {stored.hex()[:12]}, "
                f"config gives {block_hash.short()}); use another storage.path"
            )

    def _header(self, block_hash: BlockHash) -> Header:
        block = self.store.get_block(block_hash)
        if block is None:
            raise StorageError("block missing from store", key=block_hash)
        return block.header
