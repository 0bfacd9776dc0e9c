"""`ConsensusEngine` (seed `consensus::ConsensusEngine`): propose, validate, commit, fork choice.

Phases (CometBFT ABCI++ names):
- CheckTx: `submit_tx` -> `TxPool.check` (cheap, no ML).
- PrepareProposal: `propose_block` picks pool txs that pass the state rules, runs V_auth on the
  registrations, drops the ones that fail (reason recorded, queryable by tx hash) and leaves the
  ones the verifier could not answer in the pool for a later block.
- ProcessProposal: `import_block` runs V_base then V_auth on the whole block.
- Commit: block, state writes, undo record, tx index, pool removals and tip in one atomic Commit.

The engine reads no clock: time comes in as `now_ms`. Its only I/O seam is the `MlVerifier`
behind `MlValidity`, which is why proposal and import are coroutines.

A block whose parent is not the tip is stored on a side branch. When the fork choice prefers it,
state is rolled back to the common ancestor with the stored undo records and the branch is
re-validated and applied. If any branch block fails, the current chain stays.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from authchain.chain import codec, crypto
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.fork_choice import ForkChoice, LongestChainForkChoice
from authchain.chain.consensus.pool import TxPool
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.errors import Rejected, StorageError
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.state import (
    Genesis,
    InvalidTx,
    StateView,
    TxReason,
    compute_state_root,
    genesis_state,
    get_account,
    get_registrations,
    process_lineage,
    try_process_tx,
)
from authchain.chain.types import (
    ZERO_HASH,
    AccountId,
    Aid,
    ArtefactMetadata,
    Block,
    BlockHash,
    Header,
    Height,
    Record,
    Transaction,
    TxHash,
    TxRegisterModel,
    get_signer,
)
from authchain.chain.validation.base import (
    InvalidBlock,
    get_expected_proposer,
    validate_block_body,
    validate_proposer,
    validate_state_root,
)
from authchain.chain.validation.ml import (
    FilesUnavailable,
    MlUnavailable,
    MlValidity,
    Verdict,
    get_lineage,
    make_claim,
)

log = logging.getLogger(__name__)

GENESIS_META = b"genesis"
_UndoRecord = tuple[tuple[bytes, bytes | None], ...]


class ImportStatus(enum.StrEnum):
    """What `import_block` did with a block."""

    ACCEPTED = "accepted"  # it is the new tip
    SIDE = "side"  # stored on a side branch
    KNOWN = "known"  # already stored
    DEFERRED = "deferred"  # ML service unavailable: neither accepted nor invalid; retry
    INVALID = "invalid"
    ORPHAN = "orphan"  # parent unknown


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The outcome of importing one block."""

    status: ImportStatus
    block_hash: BlockHash
    reason: str | None = None


class TxRejection(Record, frozen=True):
    """Why a pool tx was dropped: a stable reason code and a human detail."""

    reason: str
    detail: str


def compute_genesis_block(genesis: Genesis, config: ConsensusConfig) -> Block:
    """Block 0: commits to the genesis state and, through pos_proof, to the chain's rules:
    fees, impersonation, validators, the block validity limits and the watermark floors."""
    f = genesis.floors
    rules = codec.encode(
        (
            "authchain/genesis/v2",
            genesis.chain_id,
            genesis.min_fee,
            genesis.impersonation,
            tuple((v.scheme.value, v.public_key) for v in genesis.validators),
            config.validity_rules(),
            (
                f.min_trigger_count, f.min_signature_bits, f.trigger_p_log2, f.feature_p_log2,
                f.derivative_p_log2, f.max_logit_band,
            ),
        )
    )  # fmt: skip
    header = Header(
        parent=BlockHash(ZERO_HASH),
        height=0,
        timestamp=genesis.timestamp_ms,
        proposer=AccountId(ZERO_HASH),
        tx_root=codec.compute_tx_root(()),
        state_root=compute_state_root(sorted(genesis_state(genesis).items())),
        pos_proof=bytes(codec.hash_bytes(rules)),
    )
    return Block(header)


# Permanent reasons: such a tx can never become valid, so the proposer drops it from the pool.
_PERMANENT = {
    TxReason.BAD_SIGNATURE,
    TxReason.UNSIGNED_NOT_ALLOWED,
    TxReason.AID_ALREADY_REGISTERED,
    TxReason.CLAIM_BELOW_FLOOR,
}


class ConsensusEngine:
    """Single-chain proof-of-authority engine over a `BlockStore`."""

    def __init__(
        self,
        store: BlockStore,
        genesis: Genesis,
        config: ConsensusConfig,
        ml: MlValidity,
        *,
        metrics: ChainMetrics | None = None,
        fork_choice: ForkChoice | None = None,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.config = config
        self.ml = ml
        self.metrics = metrics
        self.fork_choice = fork_choice or LongestChainForkChoice()
        self._invalid: dict[BlockHash, str] = {}
        self._waiting: dict[TxHash, Height] = {}
        """Registrations whose files are not uploaded yet: the height they were first tried."""
        self.genesis_hash: BlockHash
        """Hash of block 0; set (and checked against the store) by `_open_genesis`."""
        self._open_genesis()
        self._state: dict[bytes, bytes] = dict(store.iter_state())
        self.pool = TxPool(store, genesis, config.max_pool_txs)
        tip = store.tip()
        if tip is None:
            raise StorageError("store has no tip after genesis")
        self._tip = tip
        self._tip_header = self._header(tip)
        self._update_gauges()

    # --- reads ------------------------------------------------------------------------------

    @property
    def tip(self) -> BlockHash:
        return self._tip

    @property
    def tip_header(self) -> Header:
        return self._tip_header

    @property
    def height(self) -> Height:
        return self._tip_header.height

    def view(self) -> StateView:
        """A read view of the state at the tip."""
        return StateView(self._state)

    def get_rejection(self, tx_hash: TxHash) -> TxRejection | None:
        """Why a tx was dropped from the pool, if it was."""
        raw = self.store.get_rejection(tx_hash)
        return None if raw is None else codec.decode(raw, TxRejection)

    # --- CheckTx ----------------------------------------------------------------------------

    def submit_tx(self, tx: Transaction) -> TxHash:
        """Admit `tx` to the pool; raises InvalidTx or PoolRejected with the reason."""
        try:
            tx_hash = self.pool.add(self.view(), tx)
        except Rejected as exc:
            if self.metrics:
                self.metrics.txs_rejected.labels(reason=exc.reason).inc()
            raise
        self._update_gauges()
        return tx_hash

    # --- PrepareProposal --------------------------------------------------------------------

    async def propose_block(self, key: crypto.KeyPair, now_ms: int) -> ImportResult | None:
        """Build, sign and import the next block if it is `key`'s turn; None if nothing to do."""
        height = self.height + 1
        if get_expected_proposer(self.genesis.validators, height).account != key.account:
            return None
        dropped: dict[TxHash, TxRejection] = {}
        selected = self._select_by_state(self.pool.candidates(), height, key.account, dropped)
        registered = _registrations_for(self.view(), selected)
        claims = {
            codec.compute_tx_hash(tx): make_claim(tx, registered)
            for tx in selected
            if isinstance(tx, TxRegisterModel)
        }
        results = await self.ml.verify_claims(list(claims.values()))
        skip: set[TxHash] = set()
        lineage: dict[Aid, tuple[Aid, ...]] = {}
        for (tx_hash, claim), result in zip(claims.items(), results, strict=True):
            if isinstance(result, MlUnavailable):
                skip.add(tx_hash)  # stays pooled: unavailable is not invalid
                self._note_unavailable(tx_hash, height, result, dropped)
            elif not result.ok:
                skip.add(tx_hash)
                dropped[tx_hash] = TxRejection(
                    result.reason or "ml_auth_failed", _verdict_text(result)
                )
            else:
                self._waiting.pop(tx_hash, None)
                lineage[claim.aid] = get_lineage(claim, result)
        kept = [tx for tx in selected if codec.compute_tx_hash(tx) not in skip]
        # Removing a tx can break a later one from the same signer (nonce gap): re-select.
        txs = self._select_by_state(kept, height, key.account, dropped)
        if dropped:
            self._drop(dropped)
        if not txs and not self.config.allow_empty_blocks:
            return None
        view = StateView(self._state)
        for tx in txs:
            try_process_tx(view, tx, self.genesis, height, key.account)
        process_lineage(view, lineage)
        header = Header(
            parent=self._tip,
            height=height,
            timestamp=max(now_ms, self._tip_header.timestamp + 1),
            proposer=key.account,
            tx_root=codec.compute_tx_root(txs),
            state_root=compute_state_root(view.items()),
        )
        block = crypto.sign_block(Block(header, tuple(txs)), key, self.genesis.chain_id)
        return await self.import_block(block, now_ms)

    def _select_by_state(
        self,
        candidates: list[Transaction],
        height: Height,
        proposer: AccountId,
        dropped: dict[TxHash, TxRejection],
    ) -> list[Transaction]:
        view = StateView(self._state)
        out: list[Transaction] = []
        size = len(codec.encode(Block(self._tip_header)))  # header + envelope, roughly
        artefacts = 0
        for tx in candidates:
            if len(out) >= self.config.max_block_txs:
                break
            tx_size = len(codec.encode(tx)) + 8
            if size + tx_size > self.config.max_block_size_bytes:
                continue
            if isinstance(tx, TxRegisterModel) and artefacts >= self.ml.max_artefacts_per_block:
                continue
            try:
                try_process_tx(view, tx, self.genesis, height, proposer)
            except InvalidTx as exc:
                stale = exc.reason is TxReason.BAD_NONCE and tx.nonce < _nonce_in(view, tx)
                if exc.reason in _PERMANENT or stale:
                    dropped[codec.compute_tx_hash(tx)] = TxRejection(exc.reason, exc.detail)
                continue
            out.append(tx)
            size += tx_size
            artefacts += isinstance(tx, TxRegisterModel)
        return out

    def _note_unavailable(
        self,
        tx_hash: TxHash,
        height: Height,
        error: MlUnavailable,
        dropped: dict[TxHash, TxRejection],
    ) -> None:
        """A registration V_auth could not judge stays pooled; one whose files are still not
        uploaded `files_wait_blocks` after it was first tried is dropped (`files_unavailable`)."""
        if not isinstance(error, FilesUnavailable):
            log.warning("V_auth unavailable for tx %s: %s", tx_hash.short(), error)
            return
        first = self._waiting.setdefault(tx_hash, height)
        waited = height - first
        if waited >= self.config.files_wait_blocks:
            self._waiting.pop(tx_hash, None)
            dropped[tx_hash] = TxRejection(
                "files_unavailable",
                f"{error.reason} for {waited} blocks (consensus.files_wait_blocks = "
                f"{self.config.files_wait_blocks}): upload the files and submit it again",
            )
        else:
            log.info(
                "tx %s waits for its files (%s, %d of %d blocks)", tx_hash.short(),
                error.reason, waited, self.config.files_wait_blocks,
            )  # fmt: skip

    def _drop(self, dropped: dict[TxHash, TxRejection]) -> None:
        self.store.commit(
            Commit(
                pool_remove=set(dropped),
                rejected={h: codec.encode(r) for h, r in dropped.items()},
            )
        )
        self.pool.forget(dropped)
        for tx_hash, rejection in dropped.items():
            self._waiting.pop(tx_hash, None)
            log.info("dropped tx %s: %s (%s)", tx_hash.short(), rejection.reason, rejection.detail)
            if self.metrics:
                self.metrics.txs_rejected.labels(reason=rejection.reason).inc()
        self._update_gauges()

    # --- ProcessProposal + Commit -----------------------------------------------------------

    async def import_block(self, block: Block, now_ms: int) -> ImportResult:
        """Validate `block` and commit it, store it on a side branch, or say why not."""
        block_hash = codec.compute_block_hash(block.header)
        if block_hash in self._invalid:
            return ImportResult(ImportStatus.INVALID, block_hash, self._invalid[block_hash])
        if self.store.has_block(block_hash):
            return ImportResult(ImportStatus.KNOWN, block_hash)
        parent = self.store.get_block(block.header.parent)
        if parent is None:
            return ImportResult(ImportStatus.ORPHAN, block_hash, "parent block unknown")
        started = time.perf_counter()
        try:
            if block.header.parent == self._tip:
                result = await self._extend(block, block_hash, now_ms)
            elif self.fork_choice.prefers(block.header, self._tip_header):
                result = await self._reorg(block, block_hash, now_ms)
            else:
                validate_proposer(block, self.genesis)
                self.store.put_block(block)
                result = ImportResult(ImportStatus.SIDE, block_hash)
        except InvalidBlock as exc:
            return self._invalid_block(block_hash, exc)
        except MlUnavailable as exc:
            log.warning("block %s deferred: ML service unavailable: %s", block_hash.short(), exc)
            if self.metrics:
                self.metrics.blocks_retried.inc()
            return ImportResult(ImportStatus.DEFERRED, block_hash, f"ml_unavailable: {exc}")
        finally:
            if self.metrics:
                self.metrics.block_validation_seconds.observe(time.perf_counter() - started)
        return result

    async def _validate_on(
        self, view: StateView, block: Block, parent_hash: BlockHash, parent: Header, now_ms: int
    ) -> _UndoRecord:
        """V_base then V_auth on a child of `view` (the parent state); keep the writes, return
        the undo record."""
        registered = _registrations_for(view, block.txs)
        child = view.child()
        validate_block_body(child, block, parent_hash, parent, self.genesis, self.config, now_ms)
        verdicts = await self.ml.check_block(block.txs, registered)
        process_lineage(child, {claim.aid: get_lineage(claim, v) for claim, v in verdicts})
        validate_state_root(child, block)
        undo = tuple(child.undo().items())  # before absorbing: the values at the parent
        view.absorb(child)
        return undo

    async def _extend(self, block: Block, block_hash: BlockHash, now_ms: int) -> ImportResult:
        view = StateView(self._state)
        undo = await self._validate_on(view, block, self._tip, self._tip_header, now_ms)
        tx_hashes = [codec.compute_tx_hash(tx) for tx in block.txs]
        self._commit(
            view,
            Commit(
                blocks=[block],
                heights={block.header.height: block_hash},
                undo={block_hash: codec.encode(undo)},
                pool_remove=set(tx_hashes),
                tx_index={h: codec.encode((block_hash, i)) for i, h in enumerate(tx_hashes)},
                tip=block_hash,
            ),
            block,
        )
        if self.metrics:
            self.metrics.txs_committed.inc(len(block.txs))
        log.info("block %d %s: %d txs", block.header.height, block_hash.short(), len(block.txs))
        return ImportResult(ImportStatus.ACCEPTED, block_hash)

    async def _reorg(self, block: Block, block_hash: BlockHash, now_ms: int) -> ImportResult:
        # The new branch, oldest first, back to the first block that is on the canonical chain.
        branch = [block]
        while True:
            head = branch[0].header
            parent_hash = head.parent
            if self.store.get_block_hash(head.height - 1) == parent_hash:
                break
            parent_block = self.store.get_block(parent_hash)
            if parent_block is None:
                return ImportResult(ImportStatus.ORPHAN, block_hash, "branch ancestor unknown")
            branch.insert(0, parent_block)
        ancestor_hash = branch[0].header.parent
        ancestor_height = branch[0].header.height - 1

        view = StateView(self._state)
        abandoned: list[Block] = []
        for height in range(self.height, ancestor_height, -1):
            old_hash = self._canonical_hash(height)
            raw = self.store.get_undo(old_hash)
            if raw is None:
                raise StorageError("missing undo record", key=old_hash)
            record: _UndoRecord = codec.decode(raw, _UndoRecord)
            for key, old_value in record:
                view.writes[key] = old_value
            old_block = self.store.get_block(old_hash)
            if old_block is None:
                raise StorageError("canonical block missing", key=old_hash)
            abandoned.append(old_block)

        undo: dict[BlockHash, bytes | None] = {}
        parent_hash, parent_header = ancestor_hash, self._header(ancestor_hash)
        for b in branch:
            h = codec.compute_block_hash(b.header)
            undo[h] = codec.encode(
                await self._validate_on(view, b, parent_hash, parent_header, now_ms)
            )
            parent_hash, parent_header = h, b.header

        new_txs = {codec.compute_tx_hash(tx): (i, b) for b in branch for i, tx in enumerate(b.txs)}
        old_txs = [tx for b in abandoned for tx in b.txs]
        back_to_pool = [tx for tx in old_txs if codec.compute_tx_hash(tx) not in new_txs]
        tx_index: dict[TxHash, bytes | None] = {codec.compute_tx_hash(tx): None for tx in old_txs}
        for tx_hash, (i, b) in new_txs.items():
            tx_index[tx_hash] = codec.encode((codec.compute_block_hash(b.header), i))
        heights: dict[Height, BlockHash | None] = {
            b.header.height: codec.compute_block_hash(b.header) for b in branch
        }
        for height in range(block.header.height + 1, self.height + 1):
            heights[height] = None
        self._commit(
            view,
            Commit(
                blocks=branch,
                heights=heights,
                undo=undo,
                pool_add=back_to_pool,
                pool_remove=set(new_txs),
                tx_index=tx_index,
                tip=block_hash,
            ),
            block,
        )
        if self.metrics:
            self.metrics.reorgs.inc()
            self.metrics.txs_committed.inc(len(new_txs))
        log.warning(
            "reorg: tip %d %s (fork at %d, %d blocks dropped)",
            block.header.height, block_hash.short(), ancestor_height, len(abandoned),
        )  # fmt: skip
        return ImportResult(ImportStatus.ACCEPTED, block_hash)

    def _commit(self, view: StateView, commit: Commit, tip_block: Block) -> None:
        commit.state = dict(view.writes)
        self.store.commit(commit)
        self.pool.restore(commit.pool_add)
        self.pool.forget(commit.pool_remove)
        for tx_hash in commit.pool_remove:
            self._waiting.pop(tx_hash, None)
        for key, value in view.writes.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        if commit.tip is None:
            raise StorageError("a block commit must move the tip")
        self._tip = commit.tip
        self._tip_header = tip_block.header
        self._update_gauges()

    def _invalid_block(self, block_hash: BlockHash, exc: InvalidBlock) -> ImportResult:
        self._invalid[block_hash] = str(exc)
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
            self.store.commit(
                Commit(
                    blocks=[block],
                    heights={0: block_hash},
                    state=dict(genesis_state(self.genesis)),
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

    def _canonical_hash(self, height: Height) -> BlockHash:
        block_hash = self.store.get_block_hash(height)
        if block_hash is None:
            raise StorageError(f"canonical chain has no block at height {height}")
        return block_hash

    def _update_gauges(self) -> None:
        if self.metrics:
            self.metrics.chain_height.set(self.height)
            self.metrics.pool_size.set(len(self.pool))


def _registrations_for(view: StateView, txs: Sequence[Transaction]) -> list[ArtefactMetadata]:
    """The registrations in `view` that `txs`' claims are checked against; none are read (an
    O(state) scan) when no tx registers a model."""
    if not any(isinstance(tx, TxRegisterModel) for tx in txs):
        return []
    return get_registrations(view)


def _nonce_in(view: StateView, tx: Transaction) -> int:
    return get_account(view, get_signer(tx)).nonce


def _verdict_text(v: Verdict) -> str:
    names = ("trigger_acc", "feat_dist", "logit_stat", "p_value", "feat_p_value")
    parts = [f"{n}={getattr(v, n):.6g}" for n in names if getattr(v, n) is not None]
    text = f"V_auth failed: {v.reason or 'no reason given'}"
    if v.detail:  # the verifier's own account names every statistic
        return f"{text}: {v.detail:.500}"
    return text + (f" ({', '.join(parts)})" if parts else "")
