"""The authchain application: state machine, V_base tx rules and V_auth, one method per ABCI++
call (DESIGN.md §4), shaped like CometBFT's kvstore example app.

Two drivers run it:
- `consensus.engine.ConsensusEngine`, the embedded single-validator driver (`authchain node`);
- `abci.server.AbciServer`, which CometBFT drives over ABCI 2.0 (`authchain abci`).

    info              last committed height and app hash (the state root), for the handshake
    init_chain        write the genesis state (once); its root is the genesis app hash
    check_tx          pool admission: cheap rules only, never ML; `recheck` after each commit
    prepare_proposal  proposer: pick pool txs that pass the state rules, run V_auth on the
                      registrations, drop answered failures (reason recorded), keep unavailable
                      ones for a later block
    process_proposal  every validator: the tx rules of V_base and V_auth on the whole block;
                      InvalidBlock only for a definite failure, MlUnavailable when V_auth had no
                      answer (never an invalid verdict)
    finalize_block    execute a decided block: per-tx results, lineage, the new app hash
    commit            write the finalized block's state, tx index and pool removals atomically
    query             read-only JSON views: status, accounts, artefacts, tx status

The application reads no clock: block time and height come in as arguments. Its only I/O seam
is the `MlVerifier` behind `MlValidity` and the `BlockStore`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from authchain.chain import codec, queries
from authchain.chain.claims import (
    ClaimIndex,
    ClaimRecord,
    claim_record,
    decode_claim,
    encode_claim,
)
from authchain.chain.config import ConsensusConfig, is_test_chain
from authchain.chain.consensus.pool import PoolPolicy, PoolReason, TxPool, TxRejection
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.errors import DecodeError, InvalidField, Rejected, StorageError
from authchain.chain.metrics.prometheus import ChainMetrics, metric_reason
from authchain.chain.smt import StateTree, TreeUpdate
from authchain.chain.state import (
    Genesis,
    StateView,
    TxReason,
    check_tx_state,
    compute_state_root,
    genesis_state,
    get_account,
    get_registrations,
    process_lineage,
)
from authchain.chain.types import (
    ZERO_HASH,
    AccountId,
    Aid,
    ArtefactMetadata,
    Block,
    BlockHash,
    Hash256,
    Header,
    Height,
    Transaction,
    TxHash,
    TxRegisterModel,
    get_signer,
)
from authchain.chain.validation.base import check_tx_count
from authchain.chain.validation.ml import (
    ArtefactClaim,
    FilesUnavailable,
    MlUnavailable,
    MlValidity,
    Verdict,
    make_claim,
    verdict_text,
)
from authchain.chain.validation.pipeline import (
    BlockContext,
    BlockTxs,
    TxResult,
    Verdicts,
    first_failure,
    run_block_txs,
)

log = logging.getLogger(__name__)

META_HEIGHT = b"app/height"
META_APP_HASH = b"app/hash"

# Permanent reasons: such a tx can never become valid, so the proposer drops it from the pool.
PERMANENT = frozenset(
    {
        TxReason.BAD_SIGNATURE,
        TxReason.UNSIGNED_NOT_ALLOWED,
        TxReason.AID_ALREADY_REGISTERED,
        TxReason.CLAIM_BELOW_FLOOR,
    }
)


@dataclass(frozen=True, slots=True)
class AppInfo:
    """What the handshake needs: the last committed height and its app hash."""

    height: Height
    app_hash: Hash256


@dataclass(frozen=True, slots=True)
class Finalized:
    """`finalize_block`'s answer; its writes wait in the application until `commit`."""

    height: Height
    app_hash: Hash256
    results: tuple[TxResult, ...]
    lineage: Mapping[Aid, tuple[Aid, ...]]


@dataclass(slots=True)
class _Pending:
    finalized: Finalized
    writes: dict[bytes, bytes | None]
    tree: TreeUpdate
    tx_hashes: list[TxHash]
    claims: dict[TxHash, ClaimRecord]


@dataclass(frozen=True, slots=True)
class ProposalLimits:
    """How much one proposal may hold."""

    max_txs: int
    max_bytes: int
    """Sum of the encoded txs' sizes."""
    tx_overhead: int = 0
    """Bytes a tx adds to the block besides its encoding (framing)."""


@dataclass(slots=True)
class Proposal:
    """`prepare_proposal`'s answer: the txs to propose and the pool txs dropped on the way."""

    txs: list[Transaction]
    dropped: dict[TxHash, TxRejection] = field(default_factory=dict)


PRUNE_EVERY = 64
"""Blocks between two prunings of old rejection records."""
REASONS = frozenset({*TxReason, *PoolReason, "invalid_tx"})
"""The chain's own reason codes (metric labels)."""


class Misbehaviour(Exception):
    """A misbehaviour switch was asked for where it is not allowed."""


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
        state_root=compute_state_root(genesis_state(genesis).items()),
        pos_proof=bytes(codec.hash_bytes(rules)),
    )
    return Block(header)


class Application:
    """authchain's ABCI++ application over a `BlockStore`."""

    def __init__(
        self,
        store: BlockStore,
        genesis: Genesis,
        config: ConsensusConfig,
        ml: MlValidity,
        *,
        metrics: ChainMetrics | None = None,
        persist_pool: bool = True,
        include_unverified_claims: bool = False,
    ) -> None:
        if include_unverified_claims and not is_test_chain(genesis.chain_id):
            raise Misbehaviour(
                f"misbehaviour switches run only on test chains (chain id ending in -test, "
                f"-testnet or -devnet), not on {genesis.chain_id!r}"
            )
        self.store = store
        self.genesis = genesis
        self.config = config
        self.genesis_hash = codec.compute_block_hash(compute_genesis_block(genesis, config).header)
        """Commits to the genesis state and the chain's rules (validators, limits, floors)."""
        self.ml = ml
        self.metrics = metrics
        self.include_unverified_claims = include_unverified_claims
        """Byzantine test switch: propose registrations without running V_auth, and accept
        any proposal's claims unverified (finalize still verifies, or the app hash would
        fork from the honest validators')."""
        self._state: dict[bytes, bytes] = dict(store.iter_state())
        self.claim_index = ClaimIndex(self._read_claims())
        """The claim records (the store's `claims` column), indexed for the claims query."""
        self._info = self._read_info()
        """The last committed height and app hash, kept in memory (CheckTx reads it per tx)."""
        self.tree = StateTree(store.get_tree_node)
        """The persisted state tree; its root is the app hash."""
        self._check_tree()
        policy = PoolPolicy(
            max_txs=config.max_pool_txs,
            max_txs_per_sender=config.max_pool_txs_per_sender,
            max_nonce_gap=config.max_nonce_gap,
            ttl_blocks=config.pool_ttl_blocks,
        )
        self.pool = TxPool(store, genesis, policy, persist=persist_pool, height=self.height)
        self._pending: _Pending | None = None
        self._written_seq = 0
        self._flush_task: asyncio.Future[None] | None = None
        self.extra_status: dict[str, int] = {}
        """Counters a driver adds to `status()` (the ABCI server's proposal verdicts)."""
        self._waiting: dict[TxHash, Height] = {}
        """Registrations whose files are not uploaded yet: the height they were first tried."""
        self._retry_at: dict[TxHash, tuple[int, Height]] = {}
        """Registrations V_auth could not answer: (tries, the height to try again). Each miss
        doubles the wait, up to 64 blocks, so one slow claim cannot slow every block."""
        if include_unverified_claims:
            log.warning("MISBEHAVING: proposing and accepting registrations without V_auth")

    # --- Info / InitChain -------------------------------------------------------------------

    def info(self) -> AppInfo:
        """The last committed height and app hash (height 0 before `init_chain`)."""
        return self._info

    def _read_info(self) -> AppInfo:
        raw_height = self.store.get_meta(META_HEIGHT)
        raw_hash = self.store.get_meta(META_APP_HASH)
        if raw_height is None or raw_hash is None:
            return AppInfo(0, Hash256(b"\0" * 32))
        return AppInfo(int.from_bytes(raw_height, "big"), Hash256(raw_hash))

    @property
    def height(self) -> Height:
        return self._info.height

    def _check_tree(self) -> None:
        """The stored tree's root is the stored app hash (a data directory written before
        the tree existed gets its tree built once, and must then agree too)."""
        if self.store.get_meta(META_APP_HASH) is None:
            return
        if self.tree.is_empty() and self._state:
            log.info("building the state tree over %d entries (once)", len(self._state))
            update = self.tree.update(self._state)
            self.store.commit(Commit(tree=update.nodes))
            self.tree.apply(update)
        if self.tree.root() != self._info.app_hash:
            raise StorageError(
                f"the state tree's root {self.tree.root().hex()} is not the committed app hash "
                f"{self._info.app_hash.hex()}: this data directory was written by another "
                "version of authchain (delete it to start the chain afresh)"
            )

    def init_chain(self, extra: Commit | None = None) -> Hash256:
        """Write the genesis state if the store has none; the genesis app hash either way."""
        state = genesis_state(self.genesis)
        if self.store.get_meta(META_APP_HASH) is not None:
            return compute_state_root(state.items())
        update = self.tree.update(state)
        root = Hash256(update.root)
        commit = extra or Commit()
        commit.state = dict(state)
        commit.tree = update.nodes
        commit.meta |= {META_HEIGHT: (0).to_bytes(8, "big"), META_APP_HASH: bytes(root)}
        self.store.commit(commit)
        self.tree.apply(update)
        self._state = dict(self.store.iter_state())
        self._info = AppInfo(0, root)
        return root

    def view(self) -> StateView:
        """A read view of the committed state."""
        return StateView(self._state)

    # --- CheckTx ----------------------------------------------------------------------------

    def check_tx(self, tx: Transaction, *, recheck: bool = False, write: bool = True) -> TxHash:
        """Admit `tx` to the pool (raises InvalidTx or PoolRejected with the reason). On a
        recheck (after a commit) the tx is already pooled: only its state rules are checked
        again, and a tx this node dropped in a proposal stays dropped. With `write=False` the
        pool's store writes wait for `flush_pool`, which many txs then share."""
        try:
            if not recheck:
                tx_hash = self.pool.add(self.view(), tx, self.height)
                if write:
                    self._write_unsaved()
            else:
                tx_hash = codec.compute_tx_hash(tx)
                rejection = self.get_rejection(tx_hash)
                if rejection is not None:
                    raise Rejected(rejection.reason, rejection.detail)
                try:
                    check_tx_state(self.view(), tx, self.genesis, future_nonce_ok=True)
                except Rejected:
                    self.pool.forget([tx_hash])
                    raise
        except Rejected as exc:
            if self.metrics:
                self.metrics.txs_rejected.labels(reason=metric_reason(exc.reason, REASONS)).inc()
            raise
        self._update_gauges()
        return tx_hash

    def _write_unsaved(self) -> None:
        seq = self.pool.unsaved_seq
        if seq > self._written_seq:  # CometBFT's CheckTx usually has nothing to write
            self.store.commit(self.pool.take_unsaved())
            self._written_seq = seq

    async def flush_pool(self) -> None:
        """Make every tx admitted so far durable: one RocksDB write, in a worker thread, for
        all the txs added since the last one (group commit); concurrent callers share it."""
        target = self.pool.unsaved_seq
        while self._written_seq < target:
            if self._flush_task is None:
                self._flush_task = asyncio.ensure_future(self._flush_unsaved())
            await asyncio.shield(self._flush_task)

    async def _flush_unsaved(self) -> None:
        try:
            seq = self.pool.unsaved_seq
            if seq > self._written_seq:
                await asyncio.to_thread(self.store.commit, self.pool.take_unsaved())
            self._written_seq = max(self._written_seq, seq)
        finally:
            self._flush_task = None

    async def pool_writes_idle(self) -> None:
        """Wait for an in-flight pool write (a block commit that removes a tx must not be
        overtaken by the write that adds it)."""
        while self._flush_task is not None:
            await asyncio.shield(self._flush_task)

    def get_rejection(self, tx_hash: TxHash) -> TxRejection | None:
        """Why a tx was dropped from the pool, if it was."""
        raw = self.store.get_rejection(tx_hash)
        return None if raw is None else codec.decode(raw, TxRejection)

    # --- PrepareProposal --------------------------------------------------------------------

    async def prepare_proposal(
        self,
        candidates: Sequence[Transaction],
        height: Height,
        proposer: AccountId,
        limits: ProposalLimits,
    ) -> Proposal:
        """The txs to propose at `height`, from `candidates` in proposal order
        (`pool.proposal_order`).

        Txs that break a state rule for good are dropped; registrations that V_auth answered
        `ok=false` are dropped with the verifier's reason; those V_auth could not answer stay
        in the pool (files never uploaded are dropped after `files_wait_blocks`)."""
        dropped: dict[TxHash, TxRejection] = {}
        failed: dict[TxHash, Verdict] = {}
        ctx = BlockContext.of(self.genesis, self.config, height, proposer)
        selected = self._pack(candidates, ctx, limits, dropped)
        if not self.include_unverified_claims:
            registered = _registrations_for(self.view(), selected)
            claims = {
                codec.compute_tx_hash(tx): make_claim(tx, registered)
                for tx in selected
                if isinstance(tx, TxRegisterModel)
            }
            results = await self.ml.verify_claims(
                list(claims.values()), budget_secs=self.config.proposal_verify_secs
            )
            verdicts: dict[TxHash, tuple[ArtefactClaim, Verdict]] = {}
            unavailable: set[TxHash] = set()
            for (tx_hash, claim), result in zip(claims.items(), results, strict=True):
                if isinstance(result, MlUnavailable):
                    unavailable.add(tx_hash)  # stays pooled: unavailable is not invalid
                    self._note_unavailable(tx_hash, height, result, dropped)
                    continue
                verdicts[tx_hash] = (claim, result)
                if not result.ok:
                    failed[tx_hash] = result
                    dropped[tx_hash] = TxRejection(
                        result.reason or "ml_auth_failed", verdict_text(result)
                    )
                else:
                    self._waiting.pop(tx_hash, None)
                    self._retry_at.pop(tx_hash, None)
            if unavailable or failed:
                # Again, with the verdicts: leaving a tx out can break a later one from the
                # same signer (a nonce gap), or make room for another.
                kept = [tx for tx in selected if codec.compute_tx_hash(tx) not in unavailable]
                selected = self._pack(kept, ctx, limits, dropped, verdicts)
        elif any(isinstance(tx, TxRegisterModel) for tx in selected):
            unverified = sum(isinstance(tx, TxRegisterModel) for tx in selected)
            self.extra_status["unverified_claims_proposed"] = (
                self.extra_status.get("unverified_claims_proposed", 0) + unverified
            )
            log.warning("MISBEHAVING: proposing %d registrations without V_auth", unverified)
        if dropped:
            self._drop(dropped, failed)
        return Proposal(selected, dropped)

    def _pack(
        self,
        candidates: Sequence[Transaction],
        ctx: BlockContext,
        limits: ProposalLimits,
        dropped: dict[TxHash, TxRejection],
        verdicts: Verdicts | None = None,
    ) -> list[Transaction]:
        """The candidates that fit `limits` and pass the block-tx pipeline (V_auth deferred
        where `verdicts` has no answer), in order; those that can never pass go to `dropped`."""
        view = self.view()
        run = BlockTxs(view, ctx, verdicts)
        out: list[Transaction] = []
        size = 0
        for tx in candidates:
            if len(out) >= limits.max_txs:
                break
            tx_size = len(codec.encode(tx)) + limits.tx_overhead
            if size + tx_size > limits.max_bytes:
                continue
            tx_hash = codec.compute_tx_hash(tx)
            retry_at = self._retry_at.get(tx_hash, (0, 0))[1]
            if isinstance(tx, TxRegisterModel) and retry_at > ctx.height:
                continue  # V_auth could not answer it lately: it waits its turn
            result = run.run(tx)
            if result.code:
                stale = result.reason == TxReason.BAD_NONCE and tx.nonce < _nonce_in(view, tx)
                if result.reason in PERMANENT or stale:
                    dropped[tx_hash] = TxRejection(result.reason, result.detail)
                continue
            out.append(tx)
            size += tx_size
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
            tries = self._retry_at.get(tx_hash, (0, height))[0] + 1
            wait = min(2 ** (tries - 1), 64)
            self._retry_at[tx_hash] = (tries, height + wait)
            log.warning(
                "V_auth unavailable for tx %s (%s): next try in %d blocks",
                tx_hash.short(), error, wait,
            )  # fmt: skip
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

    def _drop(
        self, dropped: dict[TxHash, TxRejection], verdicts: Mapping[TxHash, Verdict] | None = None
    ) -> None:
        """Drop pool txs for good: their rejection records, and a claim record for each
        registration among them (with V_auth's statistics where `verdicts` has them)."""
        height = self.height
        claims: dict[TxHash, ClaimRecord] = {}
        for tx_hash, rejection in dropped.items():
            tx = self.pool.get(tx_hash)
            if isinstance(tx, TxRegisterModel):
                claims[tx_hash] = claim_record(
                    tx, height, "rejected", verdict=(verdicts or {}).get(tx_hash),
                    reason=rejection.reason, detail=rejection.detail,
                )  # fmt: skip
        self.store.commit(
            Commit(
                pool_remove=set(dropped) if self.pool.persist else set(),
                rejected={
                    h: codec.encode(msgspec.structs.replace(r, height=height))
                    for h, r in dropped.items()
                },
                claims={h: encode_claim(r) for h, r in claims.items()},
            )
        )
        self._put_claims(claims)
        self.pool.forget(dropped)
        for tx_hash, rejection in dropped.items():
            self._waiting.pop(tx_hash, None)
            self._retry_at.pop(tx_hash, None)
            log.info("dropped tx %s: %s (%s)", tx_hash.short(), rejection.reason, rejection.detail)
            if self.metrics:
                label = metric_reason(rejection.reason, REASONS)
                self.metrics.txs_rejected.labels(reason=label).inc()
        self._update_gauges()

    # --- ProcessProposal --------------------------------------------------------------------

    async def process_proposal(
        self, txs: Sequence[Transaction], height: Height, proposer: AccountId
    ) -> None:
        """The block-tx pipeline on a proposed block at `height` (on the committed state): every
        tx must pass. InvalidBlock names the first that does not; MlUnavailable when V_auth
        had no answer for some claim and none failed. The cheap rules run on the whole block
        before V_auth runs on any of it."""
        check_tx_count(len(txs), self.config)
        ctx = BlockContext.of(self.genesis, self.config, height, proposer)
        view = self.view()
        failure = first_failure(run_block_txs(view, txs, ctx).results)
        if failure is not None:
            raise failure
        if self.include_unverified_claims:
            return
        registered = _registrations_for(view, txs)
        claims = {
            codec.compute_tx_hash(tx): make_claim(tx, registered)
            for tx in txs
            if isinstance(tx, TxRegisterModel)
        }
        answers = await self.ml.verify_claims(list(claims.values()))
        verdicts = {
            tx_hash: (claim, answer)
            for (tx_hash, claim), answer in zip(claims.items(), answers, strict=True)
            if isinstance(answer, Verdict)
        }
        failure = first_failure(run_block_txs(view, txs, ctx, verdicts).results)
        if failure is not None:
            raise failure
        unavailable = [a for a in answers if isinstance(a, MlUnavailable)]
        if unavailable:
            raise MlUnavailable(f"{len(unavailable)} of {len(claims)} claims: {unavailable[0]}")

    # --- FinalizeBlock ----------------------------------------------------------------------

    async def finalize_block(
        self,
        txs: Sequence[Transaction | None],
        height: Height,
        proposer: AccountId,
        *,
        strict: bool = False,
    ) -> Finalized:
        """Execute a decided block on the committed state; its writes wait for `commit`.

        Each tx is applied or skipped with its reason (None stands for bytes that did not
        decode). V_auth runs for every claim (from the verdict cache after ProcessProposal)
        because lineage is part of the state; a claim that fails it is skipped. With `strict`
        (the embedded driver, which signs what it executes) any skipped tx is InvalidBlock.
        MlUnavailable means no answer yet: the caller retries, nothing is written."""
        if self._pending is not None and self._pending.finalized.height != height:
            raise StorageError(f"block {self._pending.finalized.height} finalized, not committed")
        if height != self.height + 1:
            raise StorageError(f"finalize {height} after committed height {self.height}")
        view = self.view()
        decoded = [tx for tx in txs if tx is not None]
        registered = _registrations_for(view, decoded)
        claims = {
            codec.compute_tx_hash(tx): make_claim(tx, registered)
            for tx in decoded
            if isinstance(tx, TxRegisterModel)
        }
        answers = await self.ml.verify_claims(list(claims.values()))
        verdicts: dict[TxHash, tuple[ArtefactClaim, Verdict]] = {}
        for (tx_hash, claim), answer in zip(claims.items(), answers, strict=True):
            if isinstance(answer, MlUnavailable):
                raise answer
            verdicts[tx_hash] = (claim, answer)
        ctx = BlockContext.of(self.genesis, self.config, height, proposer)
        run = run_block_txs(view, txs, ctx, verdicts)
        if strict and (failure := first_failure(run.results)) is not None:
            raise failure
        process_lineage(run.view, run.lineage)
        writes = dict(run.view.writes)
        tree = self.tree.update(writes)
        finalized = Finalized(height, Hash256(tree.root), tuple(run.results), run.lineage)
        hashes = [codec.compute_tx_hash(tx) for tx in decoded]
        records = _block_claims(txs, run.results, verdicts, run.lineage, height)
        self._pending = _Pending(finalized, writes, tree, hashes, records)
        return finalized

    # --- Commit -----------------------------------------------------------------------------

    def commit(self, extra: Commit | None = None) -> Finalized:
        """Write the finalized block atomically: state, height and app hash, tx index (our tx
        hash -> encode([height, index])), pool removals, plus what the driver adds."""
        pending, commit = self._prepare_commit(extra)
        self.store.commit(commit)
        return self._apply_commit(pending)

    async def commit_async(self, extra: Commit | None = None) -> Finalized:
        """`commit` with the (synced, possibly large) RocksDB write in a worker thread, so the
        event loop keeps answering; until it returns, readers see the state before the block."""
        pending, commit = self._prepare_commit(extra)
        await asyncio.to_thread(self.store.commit, commit)
        return self._apply_commit(pending)

    def _prepare_commit(self, extra: Commit | None) -> tuple[_Pending, Commit]:
        pending = self._pending
        if pending is None:
            raise StorageError("commit without a finalized block")
        if self._flush_task is not None:
            raise StorageError("commit while a pool write is in flight (await pool_writes_idle)")
        f = pending.finalized
        commit = extra or Commit()
        unsaved = self.pool.take_unsaved()  # admitted txs not yet written: this write has them
        self._written_seq = self.pool.unsaved_seq
        commit.pool_add = unsaved.pool_add + commit.pool_add
        commit.pool_remove |= unsaved.pool_remove
        commit.rejected = unsaved.rejected | commit.rejected
        commit.claims |= {h: encode_claim(r) for h, r in pending.claims.items()}
        commit.state = pending.writes
        commit.tree = pending.tree.nodes
        commit.meta |= {META_HEIGHT: f.height.to_bytes(8, "big"), META_APP_HASH: bytes(f.app_hash)}
        commit.tx_index |= {h: codec.encode((f.height, i)) for i, h in enumerate(pending.tx_hashes)}
        if self.pool.persist:
            commit.pool_remove |= set(pending.tx_hashes)
        return pending, commit

    def _apply_commit(self, pending: _Pending) -> Finalized:
        """The block is written: make memory agree, then the bookkeeping after a commit."""
        f = pending.finalized
        self._info = AppInfo(f.height, f.app_hash)
        self.tree.apply(pending.tree)
        self._pending = None
        for key, value in pending.writes.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        self._put_claims(pending.claims)
        self.pool.forget(pending.tx_hashes)
        for tx_hash in pending.tx_hashes:
            self._waiting.pop(tx_hash, None)
            self._retry_at.pop(tx_hash, None)
        if self.metrics:
            self.metrics.txs_committed.inc(sum(1 for r in f.results if r.code == 0))
        if f.height % PRUNE_EVERY == 0:
            self._prune_rejections(f.height)
        for table in (self._retry_at, self._waiting):  # only what is still pooled
            for tx_hash in [h for h in table if h not in self.pool]:
                del table[tx_hash]
        expired = self.pool.expired(f.height)
        if expired:
            why = f"pending for {self.config.pool_ttl_blocks} blocks (consensus.pool_ttl_blocks)"
            self._drop({h: TxRejection(PoolReason.EXPIRED.value, why) for h in expired})
        self._update_gauges(f.height)
        return f

    def _prune_rejections(self, height: Height) -> None:
        """Keep the rejection records (and rejected claims' records) of the last
        `rejections_kept_blocks` blocks, and at most `max_rejections` of each (the newest):
        strangers decide how many there are."""
        rejections: list[tuple[int, TxHash]] = [
            (codec.decode(raw, TxRejection).height, tx_hash)
            for tx_hash, raw in self.store.iter_rejections()
        ]
        rejected = self.claim_index.find(status="rejected", limit=len(self.claim_index))
        claims = [(record.height, tx_hash) for tx_hash, record in rejected]
        stale_rejections = self._stale(rejections, height)
        stale_claims = self._stale(claims, height)
        if stale_rejections or stale_claims:
            self.store.commit(
                Commit(rejected=dict.fromkeys(stale_rejections), claims=dict.fromkeys(stale_claims))
            )
            for tx_hash in stale_claims:
                self.claim_index.remove(tx_hash)
            log.info("pruned %d old rejection records and %d rejected claims",
                     len(stale_rejections), len(stale_claims))  # fmt: skip

    def _stale(self, records: list[tuple[int, TxHash]], height: Height) -> list[TxHash]:
        oldest = height - self.config.rejections_kept_blocks
        records.sort(reverse=True)
        keep = self.config.max_rejections
        return [h for i, (at, h) in enumerate(records) if at < oldest or i >= keep]

    def _put_claims(self, records: Mapping[TxHash, ClaimRecord]) -> None:
        """Index records the store now holds."""
        for tx_hash, record in records.items():
            self.claim_index.put(tx_hash, record)

    def _read_claims(self) -> Iterable[tuple[TxHash, ClaimRecord]]:
        for tx_hash, raw in self.store.iter_claims():
            try:
                yield tx_hash, decode_claim(raw)
            except msgspec.DecodeError:
                log.warning("skipping an unreadable claim record %s", tx_hash.short())

    def discard(self) -> None:
        """Forget a finalized block that will not be committed (the embedded driver's own
        block failed its header checks)."""
        self._pending = None

    # --- Query ------------------------------------------------------------------------------

    def query(self, path: str) -> tuple[int, bytes]:
        """ABCI Query (`chain/queries.py`'s `route`): `(0, JSON)` or `(1, JSON error)`."""
        return queries.route(self, path)

    def committed_value(self, key: bytes) -> bytes | None:
        """A state entry as of the last commit (None if absent)."""
        return self._state.get(key)

    # --- helpers ----------------------------------------------------------------------------

    def decode_tx(self, raw: bytes) -> Transaction:
        """A tx from its canonical bytes; InvalidTx(invalid_tx) naming the field."""
        try:
            tx: Transaction = codec.decode(raw, Transaction)
        except InvalidField as exc:
            raise Rejected("invalid_tx", f"tx.{exc.field}: {exc.message}", field=exc.field) from exc
        except DecodeError as exc:
            raise Rejected("invalid_tx", f"tx: {exc}") from exc
        return tx

    def _update_gauges(self, height: Height | None = None) -> None:
        if self.metrics:
            if height is not None:
                self.metrics.chain_height.set(height)
            self.metrics.pool_size.set(len(self.pool))


def _registrations_for(view: StateView, txs: Iterable[Transaction]) -> list[ArtefactMetadata]:
    """The registrations in `view` that `txs`' claims are checked against; none are read (an
    O(state) scan) when no tx registers a model."""
    if not any(isinstance(tx, TxRegisterModel) for tx in txs):
        return []
    return get_registrations(view)


def _nonce_in(view: StateView, tx: Transaction) -> int:
    return get_account(view, get_signer(tx)).nonce


def _block_claims(
    txs: Sequence[Transaction | None],
    results: Sequence[TxResult],
    verdicts: Mapping[TxHash, tuple[ArtefactClaim, Verdict]],
    lineage: Mapping[Aid, tuple[Aid, ...]],
    height: Height,
) -> dict[TxHash, ClaimRecord]:
    """The claim record of each registration in a finalized block."""
    records: dict[TxHash, ClaimRecord] = {}
    for tx, result in zip(txs, results, strict=True):
        if not isinstance(tx, TxRegisterModel):
            continue
        tx_hash = codec.compute_tx_hash(tx)
        verdict = verdicts[tx_hash][1]
        if result.code == 0:
            record = claim_record(
                tx, height, "committed", verdict=verdict, parents=lineage.get(tx.aid, ())
            )
        else:
            record = claim_record(
                tx, height, "rejected", verdict=verdict, reason=result.reason,
                detail=result.detail,
            )  # fmt: skip
        records[tx_hash] = record
    return records


__all__ = [
    "AppInfo",
    "Application",
    "Finalized",
    "Proposal",
    "ProposalLimits",
    "TxRejection",
    "TxResult",
]
