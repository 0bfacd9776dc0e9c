"""The authchain application: the ABCI++ state machine, one method per call (DESIGN.md §4),
shaped like CometBFT's kvstore example app.

Two drivers run it:
- `consensus.engine.ConsensusEngine`, the embedded single-validator driver (`authchain node`);
- `abci.server.AbciServer`, which CometBFT drives over ABCI 2.0 (`authchain abci`).

    info              last committed height and app hash (the state root), for the handshake
    init_chain        write the genesis state (once); its root is the genesis app hash
    check_tx          pool admission: cheap rules only, never ML; `recheck` after each commit
    prepare_proposal  proposer: the pool txs that pass the block-tx pipeline and V_auth
                      (`chain/proposal.py`); answered failures are dropped with their reason,
                      unanswered claims stay pooled for a later block
    process_proposal  every validator: the block-tx pipeline on the whole block, every tx must
                      pass; InvalidBlock for a definite failure, MlUnavailable when V_auth had
                      no answer (never an invalid verdict)
    finalize_block    execute a decided block through the pipeline: per-tx results, lineage,
                      the new app hash; its writes wait in the pending batch
    commit            write the pending batch, the tx index and pool removals atomically
    query             read-only JSON views (`chain/queries.py`)

What each tx must meet is `validation/pipeline.py`, for every phase. The rest lives beside this
module: the proposer's packing and retry schedule (`proposal.py`), the node-local rejection and
claim records (`records.py`), the genesis block (`genesis.py`), the pool and its durability
(`consensus/pool.py`), and a Byzantine variant for test chains (`misbehaving.py`). Consensus
state (state, state tree, height and app hash) is written only by `init_chain` and `commit`.

The application reads no clock: block time and height come in as arguments. Its only I/O seam
is the `MlVerifier` behind `MlValidity` and the `BlockStore`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from authchain.chain import codec, queries
from authchain.chain.claims import ClaimRecord, claim_record
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.pool import PoolPolicy, PoolReason, TxPool, TxRejection
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.errors import DecodeError, InvalidField, Rejected, StorageError
from authchain.chain.genesis import compute_genesis_block
from authchain.chain.metrics.prometheus import ChainMetrics, metric_reason
from authchain.chain.proposal import Proposal, ProposalLimits, Proposer
from authchain.chain.records import (
    DisputeStats,
    NodeRecords,
    dispute_stats,
    encode_claims,
    encode_dispute_stats,
)
from authchain.chain.sigpool import SignaturePool
from authchain.chain.smt import StateTree, TreeUpdate
from authchain.chain.state import (
    Genesis,
    StateView,
    TxReason,
    compute_state_root,
    genesis_state,
    process_lineage,
)
from authchain.chain.types import (
    AccountId,
    Aid,
    Hash256,
    Height,
    Transaction,
    TxDispute,
    TxHash,
    TxRegisterModel,
    get_signer,
)
from authchain.chain.validation.base import check_tx_count
from authchain.chain.validation.ml import Claim, MlUnavailable, MlValidity, Verdict
from authchain.chain.validation.pipeline import (
    DISPUTE_FAILED,
    BlockContext,
    BlockTxs,
    TxResult,
    Verdicts,
    block_claims,
    first_failure,
    run_block_txs,
)

log = logging.getLogger(__name__)

META_HEIGHT = b"app/height"
META_APP_HASH = b"app/hash"

REASONS = frozenset({*TxReason, *PoolReason, "invalid_tx"})
"""The chain's own reason codes (metric labels)."""


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
    """A finalized block's batch, waiting for `commit`."""

    finalized: Finalized
    writes: dict[bytes, bytes | None]
    tree: TreeUpdate
    tx_hashes: list[TxHash]
    claims: dict[TxHash, ClaimRecord]
    disputes: dict[TxHash, DisputeStats]
    signers: set[AccountId]
    """Every signer in the block: the accounts whose nonces it moves."""


@dataclass(frozen=True, slots=True)
class _Processed:
    """A pipeline run of a whole block: the last proposal this node accepted, which FinalizeBlock
    takes instead of running the same txs again when the decided block is that proposal; or
    the proposal this node prepared, when its packing ran the pipeline on exactly those txs
    and they hold no claims (so V_auth has nothing to add), which ProcessProposal and
    FinalizeBlock take for the same block."""

    committed: Height
    """The committed height the run read (the state it ran on)."""
    height: Height
    proposer: AccountId
    txs: tuple[Transaction | None, ...]
    verdicts: Verdicts
    run: BlockTxs

    def ran(
        self,
        committed: Height,
        height: Height,
        proposer: AccountId,
        txs: Sequence[Transaction | None],
        verdicts: Verdicts,
    ) -> bool:
        """Whether this run is that of `txs` at `height` on the state committed at
        `committed`, with `verdicts`: the same tx objects (the ABCI server passes those it
        decoded from the same bytes), or txs with the same hashes."""
        if (
            self.committed != committed
            or self.height != height
            or self.proposer != proposer
            or self.verdicts != verdicts
            or len(self.txs) != len(txs)
        ):
            return False
        return all(a is b for a, b in zip(self.txs, txs, strict=True)) or _hashes(
            self.txs
        ) == _hashes(txs)


class Application:
    """authchain's ABCI++ application over a `BlockStore`."""

    misbehaving: ClassVar[bool] = False
    """True in `misbehaving.MisbehavingApplication` (test chains only)."""

    def __init__(
        self,
        store: BlockStore,
        genesis: Genesis,
        config: ConsensusConfig,
        ml: MlValidity,
        *,
        metrics: ChainMetrics | None = None,
        persist_pool: bool = True,
        mempool: tuple[int, int] = (0, 0),
    ) -> None:
        """`persist_pool=False` under CometBFT, whose mempool holds the txs; `mempool` its
        (size, max_txs_bytes), which CheckTx keeps within (`PoolPolicy.mempool_txs`)."""
        self.store = store
        self.genesis = genesis
        self.config = config
        self.genesis_hash = codec.compute_block_hash(compute_genesis_block(genesis, config).header)
        """Commits to the genesis state and the chain's rules (validators, limits, floors)."""
        self.ml = ml
        self.metrics = metrics
        self._state: dict[bytes, bytes] = dict(store.iter_state())
        self._info = self._read_info()
        """The last committed height and app hash, kept in memory (CheckTx reads it per tx)."""
        self.tree = StateTree(store.get_tree_node)
        """The persisted state tree; its root is the app hash."""
        self._check_tree()
        self.records = NodeRecords(store, config)
        """Why this node dropped txs, and what V_auth said about each claim it judged."""
        policy = PoolPolicy(
            max_txs=config.max_pool_txs,
            max_txs_per_sender=config.max_pool_txs_per_sender,
            max_nonce_gap=config.max_nonce_gap,
            ttl_blocks=config.pool_ttl_blocks,
            next_nonce_only=not persist_pool,  # CometBFT's mempool holds the txs
            mempool_txs=mempool[0],
            mempool_bytes=mempool[1],
        )
        self.pool = TxPool(
            store, genesis, policy, persist=persist_pool, height=self.height, view=self.view()
        )
        self.proposer = Proposer(ml, config)
        self.signatures = SignaturePool(genesis.chain_id)
        """Verifies the signatures of batches `admit` takes, in worker processes."""
        self.extra_status: dict[str, int] = {}
        """Counters a driver adds to `status()` (the ABCI server's proposal verdicts)."""
        self._pending: _Pending | None = None
        self._processed: _Processed | None = None
        self._prepared: _Processed | None = None

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
        recheck (CometBFT's, after a commit) the tx is in CometBFT's mempool: it must still
        pass the state rules and be able to execute after its sender's txs rechecked before it
        (`TxPool.recheck`); a tx this node dropped in a proposal stays dropped. With
        `write=False` the pool's store writes wait for `pool.flush`, which many txs share."""
        try:
            if not recheck:
                tx_hash = self.pool.add(self.view(), tx, self.height)
                if write:
                    self.pool.write_unsaved()
            else:
                rejection = self.records.rejection(codec.compute_tx_hash(tx))
                if rejection is not None:
                    raise Rejected(rejection.reason, rejection.detail)
                tx_hash = self.pool.recheck(self.view(), tx, self.height)
        except Rejected as exc:
            if self.metrics:
                self.metrics.txs_rejected.labels(reason=metric_reason(exc.reason, REASONS)).inc()
            raise
        self._update_gauges()
        return tx_hash

    async def admit(self, txs: Sequence[Transaction]) -> list[TxHash | Rejected]:
        """Admit a batch to a pool this node owns (the embedded driver's, or under CometBFT
        with `abci.mempool = "app"`): signatures verified in worker processes
        (`chain/sigpool.py`: the signature code holds the GIL), then CheckTx for each in order,
        then one durable pool write for all of them, shared with concurrent callers. Each tx's
        hash, or why it was not admitted."""
        await self.signatures.preverify(txs)
        results: list[TxHash | Rejected] = []
        for tx in txs:
            try:
                results.append(self.check_tx(tx, write=False))
            except Rejected as exc:
                results.append(exc)
        await self.pool.flush()
        return results

    # --- PrepareProposal --------------------------------------------------------------------

    async def prepare_proposal(
        self,
        candidates: Sequence[Transaction],
        height: Height,
        proposer: AccountId,
        limits: ProposalLimits,
    ) -> Proposal:
        """The txs to propose at `height`, from `candidates` in proposal order
        (`pool.proposal_order`); what can never pass is dropped from the pool, with its
        reason (`chain/proposal.py`)."""
        ctx = BlockContext.of(self.genesis, self.config, height, proposer)
        view = self.view()
        proposal = await self.proposer.propose(view, candidates, ctx, limits)
        self._prepared = None
        if proposal.run is not None and not block_claims(view, proposal.txs):
            txs = tuple(proposal.txs)
            self._prepared = _Processed(self.height, height, proposer, txs, {}, proposal.run)
        if proposal.dropped:
            self._drop(proposal.dropped, proposal.failed)
        return proposal

    # --- ProcessProposal --------------------------------------------------------------------

    async def process_proposal(
        self, txs: Sequence[Transaction], height: Height, proposer: AccountId
    ) -> None:
        """The block-tx pipeline on a proposed block at `height` (on the committed state): every
        tx must pass. InvalidBlock names the first that does not; MlUnavailable when V_auth
        had no answer for some claim and none failed. The cheap rules run on the whole block
        before V_auth runs on any of it. The proposal this node prepared, if the pipeline ran
        on exactly its txs (`_Processed`), passes without running again."""
        check_tx_count(len(txs), self.config)
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared.ran(self.height, height, proposer, txs, {}):
            self._processed = prepared
            return
        ctx = BlockContext.of(self.genesis, self.config, height, proposer)
        view = self.view()
        run = run_block_txs(view, txs, ctx)
        failure = first_failure(run.results)
        if failure is not None:
            raise failure
        verdicts, run = await self._authenticate_proposal(view, txs, ctx) or ({}, run)
        self._processed = _Processed(self.height, height, proposer, tuple(txs), verdicts, run)

    async def _authenticate_proposal(
        self, view: StateView, txs: Sequence[Transaction], ctx: BlockContext
    ) -> tuple[Verdicts, BlockTxs] | None:
        """V_auth on a proposal that passed the cheap rules, then the pipeline with its
        verdicts: those verdicts and that run (None when there were no claims, and the cheap
        pass was the whole pipeline)."""
        claims = block_claims(view, txs)
        if not claims:
            return None
        answers = await self.ml.verify_claims(list(claims.values()))
        verdicts = {
            tx_hash: (claim, answer)
            for (tx_hash, claim), answer in zip(claims.items(), answers, strict=True)
            if isinstance(answer, Verdict)
        }
        run = run_block_txs(view, txs, ctx, verdicts)
        failure = first_failure(run.results)
        if failure is not None:
            raise failure
        unanswered = [a for a in answers if isinstance(a, MlUnavailable)]
        if unanswered:
            raise MlUnavailable(f"{len(unanswered)} of {len(claims)} claims: {unanswered[0]}")
        return verdicts, run

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
        because lineage is part of the state. With `strict` (the embedded driver, which signs
        what it executes) any skipped tx is InvalidBlock. MlUnavailable means no answer yet:
        the caller retries, nothing is written."""
        if self._pending is not None and self._pending.finalized.height != height:
            raise StorageError(f"block {self._pending.finalized.height} finalized, not committed")
        if height != self.height + 1:
            raise StorageError(f"finalize {height} after committed height {self.height}")
        view = self.view()
        claims = block_claims(view, txs)
        answers = await self.ml.verify_claims(list(claims.values()))
        verdicts: dict[TxHash, tuple[Claim, Verdict]] = {}
        for (tx_hash, claim), answer in zip(claims.items(), answers, strict=True):
            if isinstance(answer, MlUnavailable):
                raise answer
            verdicts[tx_hash] = (claim, answer)
        ctx = BlockContext.of(self.genesis, self.config, height, proposer)
        run = self._take_processed(height, proposer, txs, verdicts)
        if run is None:
            run = run_block_txs(view, txs, ctx, verdicts)
        if strict and (failure := first_failure(run.results)) is not None:
            raise failure
        process_lineage(run.view, run.lineage)
        writes = dict(run.view.writes)
        tree = self.tree.update(writes)
        finalized = Finalized(height, Hash256(tree.root), tuple(run.results), run.lineage)
        hashes = [codec.compute_tx_hash(tx) for tx in txs if tx is not None]
        records = _claim_records(txs, run.results, verdicts, run.lineage, height)
        disputes = {  # the judged disputes the block applied, upheld or failed
            h: dispute_stats(verdicts[h][1])
            for tx, result in zip(txs, run.results, strict=True)
            if isinstance(tx, TxDispute)
            and result.code in (0, DISPUTE_FAILED)
            and (h := codec.compute_tx_hash(tx)) in verdicts
        }
        signers = {get_signer(tx) for tx in txs if tx is not None}
        self._pending = _Pending(finalized, writes, tree, hashes, records, disputes, signers)
        return finalized

    def _take_processed(
        self,
        height: Height,
        proposer: AccountId,
        txs: Sequence[Transaction | None],
        verdicts: Verdicts,
    ) -> BlockTxs | None:
        """ProcessProposal's run of exactly this block (same txs, proposer, committed state and
        verdicts), or PrepareProposal's (the embedded driver finalizes its own proposal without
        processing it), which FinalizeBlock would only compute again; None otherwise. Taken
        once."""
        runs = (self._processed, self._prepared)
        self._processed = self._prepared = None
        for run in runs:
            if run is not None and run.ran(self.height, height, proposer, txs, verdicts):
                return run.run
        return None

    def close(self) -> None:
        """Stop the signature workers; the store is the caller's to close."""
        self.signatures.close()

    def discard(self) -> None:
        """Forget a finalized block that will not be committed (the embedded driver's own
        block failed its header checks)."""
        self._pending = None

    # --- Commit -----------------------------------------------------------------------------

    def commit(self, extra: Commit | None = None) -> Finalized:
        """Write the finalized block atomically: state, height and app hash, tx index (our tx
        hash -> encode([height, index])), pool removals, plus what the driver adds."""
        pending, commit = self._prepare_commit(extra)
        self.store.commit(commit)
        return self._apply_commit(pending)

    async def commit_async(self, extra: Commit | None = None) -> Finalized:
        """`commit` with the (synced, possibly large) RocksDB write in a worker thread, so the
        event loop keeps answering; until it returns, readers see the state before the block.
        A pool write in flight (a batch admitted to a pool this node owns) finishes first: the
        block's removal of a tx must not be overtaken by the write that adds it."""
        await self.pool.writes_idle()
        pending, commit = self._prepare_commit(extra)
        await asyncio.to_thread(self.store.commit, commit)
        return self._apply_commit(pending)

    def _prepare_commit(self, extra: Commit | None) -> tuple[_Pending, Commit]:
        pending = self._pending
        if pending is None:
            raise StorageError("commit without a finalized block")
        f = pending.finalized
        commit = extra or Commit()
        unsaved = self.pool.take_unsaved()  # admitted txs not yet written: this write has them
        commit.pool_add = unsaved.pool_add + commit.pool_add
        commit.pool_remove |= unsaved.pool_remove
        commit.rejected = unsaved.rejected | commit.rejected
        commit.claims |= encode_claims(pending.claims)
        commit.meta |= encode_dispute_stats(pending.disputes)
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
        self._processed = self._prepared = None
        for key, value in pending.writes.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        self.records.index(pending.claims)
        self.pool.forget(pending.tx_hashes)
        self.pool.settle(self.view(), pending.signers)
        if not self.pool.persist:  # CometBFT rechecks its mempool next: a new round
            gone = self.pool.begin_round()
            if gone:
                log.info("%d pooled txs are no longer in CometBFT's mempool", len(gone))
        self.proposer.retries.forget(pending.tx_hashes)
        if self.metrics:
            self.metrics.txs_committed.inc(sum(1 for r in f.results if r.code == 0))
        self.records.prune(f.height)
        self.proposer.retries.keep_only(self.pool)
        expired = self.pool.expired(f.height)
        if expired:
            why = f"pending for {self.config.pool_ttl_blocks} blocks (consensus.pool_ttl_blocks)"
            self._drop({h: TxRejection(PoolReason.EXPIRED.value, why) for h in expired})
        self._update_gauges(f.height)
        return f

    # --- Query ------------------------------------------------------------------------------

    def query(self, path: str) -> tuple[int, bytes]:
        """ABCI Query (`chain/queries.py`'s `route`): `(0, JSON)` or `(1, JSON error)`."""
        return queries.route(self, path)

    def committed_value(self, key: bytes) -> bytes | None:
        """A state entry as of the last commit (None if absent)."""
        return self._state.get(key)

    # --- helpers ----------------------------------------------------------------------------

    def _drop(
        self,
        dropped: Mapping[TxHash, TxRejection],
        verdicts: Mapping[TxHash, Verdict] | None = None,
    ) -> None:
        """Drop pool txs for good: their rejection records, and a claim record for each
        registration among them (with V_auth's statistics where `verdicts` has them)."""
        claims: dict[TxHash, ClaimRecord] = {}
        for tx_hash, rejection in dropped.items():
            tx = self.pool.get(tx_hash)
            if isinstance(tx, TxRegisterModel):
                claims[tx_hash] = claim_record(
                    tx, self.height, "rejected", verdict=(verdicts or {}).get(tx_hash),
                    reason=rejection.reason, detail=rejection.detail,
                )  # fmt: skip
        removed = dropped.keys() if self.pool.persist else ()
        self.records.write_dropped(dropped, claims, self.height, pool_remove=removed)
        self.pool.forget(dropped)
        self.proposer.retries.forget(dropped)
        for tx_hash, rejection in dropped.items():
            log.info("dropped tx %s: %s (%s)", tx_hash.short(), rejection.reason, rejection.detail)
            if self.metrics:
                label = metric_reason(rejection.reason, REASONS)
                self.metrics.txs_rejected.labels(reason=label).inc()
        self._update_gauges()

    def decode_tx(self, raw: bytes) -> Transaction:
        """A tx from its canonical bytes; InvalidTx(invalid_tx) naming the field."""
        try:
            tx = codec.decode_tx(raw)
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


def _hashes(txs: Sequence[Transaction | None]) -> list[TxHash | None]:
    return [None if tx is None else codec.compute_tx_hash(tx) for tx in txs]


def _claim_records(
    txs: Sequence[Transaction | None],
    results: Sequence[TxResult],
    verdicts: Mapping[TxHash, tuple[Claim, Verdict]],
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
