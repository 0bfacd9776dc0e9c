"""`TxPool`: CheckTx admission and the set of pending transactions.

Admission runs only cheap checks, never ML, each O(1) in the pool's size: decode (done by the
caller), signature and chain id, nonce not used, fee and balance, the Aid not registered, no
duplicate. Then the rules that keep a stranger from clogging the pool (`PoolPolicy`):
- a nonce at most `max_nonce_gap` above the account's next one (no far-future squatting);
  with `next_nonce_only` (under CometBFT) exactly the next one, counting pending txs;
- at most `max_txs_per_sender` pending txs per account;
- what an account's pending txs spend (fees, amounts) is covered by its balance;
- when the pool is full, a tx that can execute now, or pays a higher fee, evicts the lowest-
  fee tx that cannot (a gapped one first); otherwise `pool_full`. Which txs are stuck is kept
  up to date as txs arrive and leave and as blocks advance nonces (`settle`): each sender's
  next nonce is cached, and two heaps (stuck txs, all txs) by (fee, newest first) find the
  victim in O(log n), with a bounded number of state reads however full the pool is;
- a tx pending for `ttl_blocks` blocks expires (`expired`);
- under CometBFT, a tx that would not fit in its mempool beside the txs admitted is refused
  (`mempool_full`), since CometBFT would drop it after the app said yes.
Claims on the same Aid do not block each other here: V_auth decides, and the first valid claim
in the chain wins.

Proposal order (`proposal_order`, the same under CometBFT): each sender's txs in nonce order;
across senders the higher fee first, then the earlier arrival. Accepted txs are written to the
store before `add` returns, so a restarted node still has them (under CometBFT, whose
mempool holds them, the pool is an in-memory mirror).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from authchain.chain import codec
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.errors import Rejected, StorageError
from authchain.chain.state import (
    Genesis,
    StateView,
    check_tx_auth,
    check_tx_state,
    get_account,
    spend_of,
)
from authchain.chain.types import (
    AccountId,
    Height,
    Nonce,
    Record,
    Transaction,
    TxHash,
    TxRegisterModel,
    get_signer,
)


class PoolReason(enum.StrEnum):
    """Why the pool refused (or later dropped) a tx that may be valid in itself."""

    POOL_FULL = "pool_full"
    MEMPOOL_FULL = "mempool_full"
    DUPLICATE = "duplicate"
    NONCE_TAKEN = "nonce_taken"
    NONCE_TOO_FAR = "nonce_too_far"
    NONCE_GAP = "nonce_gap"
    SENDER_FULL = "sender_full"
    PENDING_SPEND = "pending_spend_exceeds_balance"
    EVICTED = "evicted"
    EXPIRED = "expired"


class TxRejection(Record, frozen=True):
    """Why a pool tx was dropped: a stable reason code and a human detail."""

    reason: str
    detail: str
    height: Height = 0
    """The height it was dropped at (old records are pruned)."""


class PoolRejected(Rejected):
    """The pool refused a transaction."""

    reason: PoolReason


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """Local admission limits (not validity rules: validators may differ)."""

    max_txs: int = 10_000
    max_txs_per_sender: int = 64
    max_nonce_gap: int = 16
    ttl_blocks: int = 600
    next_nonce_only: bool = False
    """Admit a tx only if its nonce is the sender's next one, counting the sender's pending
    txs (`nonce_gap` otherwise), as Cosmos SDK's sequence check does. Under CometBFT, whose
    mempool the app cannot evict from, so every tx it holds can execute and pays its fee."""
    mempool_txs: int = 0
    mempool_bytes: int = 0
    """Under CometBFT, its mempool's `size` and `max_txs_bytes` (0: not checked). A new tx that
    would not fit beside the txs the pool holds (what the mempool holds, and what the app
    admitted that CometBFT has not added yet) is refused (`mempool_full`). CometBFT checks its
    limits again after CheckTx answers and drops a tx the app admitted, with no word to its
    sender, if the mempool filled up meanwhile: refused here first, the sender hears it."""


@dataclass(slots=True)
class _Entry:
    tx: Transaction
    signer: AccountId
    seq: int
    """Arrival order."""
    added_at: Height
    spend: int
    stuck: bool = False
    """It cannot execute now: a nonce between the sender's next one and its own is missing."""
    round: int = 0
    """The last round (blocks committed) in which CometBFT's mempool was seen to hold it
    (admitted or rechecked); a mirror pool only."""
    size: int = 0
    """Its encoding's bytes (`TxPool._size`)."""

    @property
    def rank(self) -> tuple[int, int]:
        """Eviction order: the lowest fee first, then the newest."""
        return self.tx.fee, -self.seq


_Heap = list[tuple[int, int, TxHash]]


class TxPool:
    """Pending transactions, indexed by hash and by (sender, nonce), mirrored in the store."""

    def __init__(
        self,
        store: BlockStore,
        genesis: Genesis,
        policy: PoolPolicy,
        *,
        persist: bool = True,
        height: Height = 0,
        view: StateView | None = None,
    ) -> None:
        """`view`: the committed state, to restore the stored pool's txs against."""
        self._store = store
        self._genesis = genesis
        self.policy = policy
        self.persist = persist
        """Mirror the pool in the store (the embedded driver). Under CometBFT the pool is a
        mirror of CometBFT's mempool, which holds the txs, so nothing is written."""
        self._seq = itertools.count()
        self._entries: dict[TxHash, _Entry] = {}
        self._by_sender: dict[AccountId, dict[Nonce, TxHash]] = {}
        self._spend: dict[AccountId, int] = {}
        self._next: dict[AccountId, Nonce] = {}
        """Each pending sender's next nonce in the committed state (`settle` refreshes it)."""
        self._stuck: _Heap = []
        """(fee, -seq, hash) of txs that were stuck when pushed (checked again on pop)."""
        self._all: _Heap = []
        """(fee, -seq, hash) of every tx pushed (checked again on pop)."""
        self.registrations = 0
        self._bytes = 0
        """The pooled txs' encodings, in bytes (counted against CometBFT's limits only)."""
        self._round = 0
        """Mirror pools: blocks committed since start (`begin_round`)."""
        self._expected: dict[AccountId, Nonce] = {}
        """Mirror pools, this round's recheck: each sender's next nonce after its txs that
        CometBFT's mempool was seen to hold so far, in the mempool's order."""
        self._unsaved = Commit()
        self._unsaved_seq = 0
        """Counts adds with store writes: `_take_unsaved` hands out all up to this one."""
        self._written_seq = 0
        """The last add whose writes are in the store."""
        self._flush_task: asyncio.Future[None] | None = None
        if persist:
            committed = view if view is not None else StateView({})
            for tx_hash, tx in store.pool_txs():  # a restart gives them a fresh ttl
                nonce = get_account(committed, get_signer(tx)).nonce
                self._insert(tx_hash, tx, height, nonce, self._size(tx))

    @property
    def max_size(self) -> int:
        return self.policy.max_txs

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._entries

    def get(self, tx_hash: TxHash) -> Transaction | None:
        """A pending tx."""
        entry = self._entries.get(tx_hash)
        return None if entry is None else entry.tx

    # --- admission --------------------------------------------------------------------------

    def check(self, view: StateView, tx: Transaction) -> tuple[TxHash, TxHash | None]:
        """CheckTx: raise InvalidTx or PoolRejected, or return the tx hash and the pooled tx it
        would evict (the pool is full)."""
        tx_hash, victim, _ = self._admit(view, tx)
        return tx_hash, victim

    def _admit(self, view: StateView, tx: Transaction) -> tuple[TxHash, TxHash | None, Nonce]:
        """`check`, and the signer's next nonce in `view` (which `add` caches)."""
        tx_hash = codec.compute_tx_hash(tx)
        if tx_hash in self._entries:
            raise PoolRejected(PoolReason.DUPLICATE, f"tx {tx_hash} is already pending")
        check_tx_auth(tx, self._genesis)
        check_tx_state(view, tx, self._genesis, future_nonce_ok=True)
        signer = get_signer(tx)
        account = get_account(view, signer)
        p = self.policy
        if tx.nonce > account.nonce + p.max_nonce_gap:
            raise PoolRejected(
                PoolReason.NONCE_TOO_FAR,
                f"nonce {tx.nonce} is more than {p.max_nonce_gap} above the next one "
                f"({account.nonce})",
            )
        pending = self._by_sender.get(signer, {})
        if tx.nonce in pending:
            raise PoolRejected(
                PoolReason.NONCE_TAKEN, f"a pending tx of {signer} already uses nonce {tx.nonce}"
            )
        if p.next_nonce_only and self._blocked(signer, tx.nonce, account.nonce):
            expected = self.next_nonce(view, signer)
            raise PoolRejected(
                PoolReason.NONCE_GAP,
                f"nonce {tx.nonce} is not the next one ({expected}: the account's {account.nonce} "
                f"and {expected - account.nonce} pending); this network admits only txs that can "
                "execute: send the missing nonces first",
            )
        if len(pending) >= p.max_txs_per_sender:
            raise PoolRejected(
                PoolReason.SENDER_FULL,
                f"{signer} has {len(pending)} pending txs (the most one account may have)",
            )
        spend = self._spend.get(signer, 0) + spend_of(tx)
        if spend > account.balance:
            raise PoolRejected(
                PoolReason.PENDING_SPEND,
                f"pending txs of {signer} would spend {spend} > balance {account.balance}",
            )
        victim = None
        if len(self._entries) >= p.max_txs:
            victim = self._victim(tx, account.nonce)
            if victim is None:
                raise PoolRejected(PoolReason.POOL_FULL, f"pool holds {p.max_txs} txs; retry later")
        return tx_hash, victim, account.nonce

    def _blocked(self, signer: AccountId, nonce: Nonce, next_nonce: Nonce) -> bool:
        """Whether a tx of `signer` with `nonce` waits on a nonce no pending tx has (at most
        `max_nonce_gap` lookups)."""
        pending = self._by_sender.get(signer, {})
        return not all(n in pending for n in range(next_nonce, nonce))

    def _victim(self, tx: Transaction, next_nonce: Nonce) -> TxHash | None:
        """The pooled tx `tx` may evict from a full pool: the lowest-fee, newest tx that
        cannot execute now, if `tx` can or pays more; else the lowest-fee tx, if `tx` pays
        more. O(log pool) from the heaps, no state read (`next_nonce` is the signer's)."""
        signer = get_signer(tx)
        executable = not self._blocked(signer, tx.nonce, next_nonce)
        worst = self._lowest(self._stuck, lambda e: e.stuck and e.signer != signer)
        if worst is not None and (executable or tx.fee > self._entries[worst].tx.fee):
            return worst
        cheapest = self._lowest(self._all, lambda e: True)
        if cheapest is not None and tx.fee > self._entries[cheapest].tx.fee:
            return cheapest
        return None

    def _lowest(self, heap: _Heap, wanted: Callable[[_Entry], bool]) -> TxHash | None:
        """The lowest-ranked tx on `heap` that is still pending and `wanted`. Items of txs
        gone or no longer stuck are dropped for good (a tx that becomes stuck again is pushed
        again); wanted-but-not-now items (the newcomer's own txs: at most
        `max_txs_per_sender`) are put back."""
        aside, found = [], None
        while heap:
            item = heap[0]
            entry = self._entries.get(item[2])
            if entry is None or (heap is self._stuck and not entry.stuck):
                heapq.heappop(heap)
            elif not wanted(entry):
                aside.append(heapq.heappop(heap))
            else:
                found = item[2]
                break
        for item in aside:
            heapq.heappush(heap, item)
        return found

    def _classify(self, signer: AccountId) -> None:
        """Mark which of `signer`'s pending txs are stuck; push the newly stuck (at most
        `max_txs_per_sender` txs)."""
        pending = self._by_sender.get(signer)
        if not pending:
            return
        runnable = self._next.get(signer, 0)
        while runnable in pending:
            runnable += 1
        for nonce, tx_hash in pending.items():
            entry = self._entries[tx_hash]
            stuck = nonce > runnable
            if stuck and not entry.stuck:
                heapq.heappush(self._stuck, (*entry.rank, tx_hash))
            entry.stuck = stuck
        self._compact()

    def _compact(self) -> None:
        """Rebuild a heap that holds more dropped items than live ones (amortised O(1))."""
        live = len(self._entries)
        if len(self._all) > 2 * live + 64:
            self._all = [(*e.rank, h) for h, e in self._entries.items()]
            heapq.heapify(self._all)
        if len(self._stuck) > 2 * live + 64:
            self._stuck = [(*e.rank, h) for h, e in self._entries.items() if e.stuck]
            heapq.heapify(self._stuck)

    def settle(self, view: StateView, senders: Iterable[AccountId]) -> None:
        """After a block: the next nonces of `senders` (every signer in it) may have moved,
        so their pending txs may have become runnable, or stuck."""
        for signer in senders:
            if signer in self._by_sender:
                self._next[signer] = get_account(view, signer).nonce
                self._classify(signer)

    def add(
        self, view: StateView, tx: Transaction, height: Height, *, rechecked: bool = False
    ) -> TxHash:
        """CheckTx, then keep the tx; an evicted tx is forgotten and recorded. The store
        writes wait for `write_unsaved`, `flush` or the next block's commit (`take_unsaved`).
        A mirror pool takes a tx it holds again as seen (CometBFT's cache stops a tx its
        mempool holds: one that reaches the app was dropped there after the app admitted it),
        and one CometBFT `rechecked` (in its mempool already) without counting its room."""
        if not self.persist:
            entry = self._entries.get(tx_hash := codec.compute_tx_hash(tx))
            if entry is not None:
                entry.round = self._round
                return tx_hash
        tx_hash, victim, next_nonce = self._admit(view, tx)
        size = self._size(tx)
        p = self.policy
        full = len(self._entries) >= p.mempool_txs or self._bytes + size > p.mempool_bytes
        if p.mempool_txs and full and not rechecked:  # a rechecked tx is in the mempool already
            raise PoolRejected(
                PoolReason.MEMPOOL_FULL,
                f"CometBFT's mempool is full: with the txs this node admitted it holds "
                f"{len(self._entries)} txs, {self._bytes} bytes (mempool.size "
                f"{p.mempool_txs}, max_txs_bytes {p.mempool_bytes}); retry later",
            )
        rejected = {}
        if victim is not None:
            why = f"evicted from the full pool by {tx_hash.short()}, which pays more or can run"
            rejected[victim] = TxRejection(PoolReason.EVICTED.value, why, height)
            self.forget([victim])
        if self.persist:
            self._unsaved.pool_add.append(tx)
            self._unsaved.pool_remove |= set(rejected)
        self._unsaved.rejected |= {h: codec.encode(r) for h, r in rejected.items()}
        if self.persist or rejected:
            self._unsaved_seq += 1
        self._insert(tx_hash, tx, height, next_nonce, size)
        return tx_hash

    # --- mirroring CometBFT's mempool (persist=False) ---------------------------------------

    def begin_round(self) -> list[TxHash]:
        """After a commit, before CometBFT rechecks its mempool (every tx, in its order): forget
        the txs CometBFT's mempool was not seen to hold for two whole rounds, and return them.
        Those are txs the app admitted that CometBFT then refused ("mempool is full" is checked
        again after CheckTx answers) or dropped: kept, they would hold their sender's nonce,
        and every later tx of that sender would wait behind a tx no block can include. (A tx
        admitted just before a commit may join the mempool after CometBFT took the list it
        rechecks: hence two rounds.)"""
        self._round += 1
        self._expected = {}
        gone = [h for h, e in self._entries.items() if e.round < self._round - 2]
        self.forget(gone)
        return gone

    def recheck(self, view: StateView, tx: Transaction, height: Height) -> TxHash:
        """CometBFT's recheck of a pooled `tx` after a commit: it still passes the state rules
        and can execute after its sender's txs rechecked before it (CometBFT rechecks in
        arrival order, which next-nonce-only admission makes each sender's nonce order). If
        not, it is forgotten and InvalidTx or PoolRejected(nonce_gap) says why (CometBFT then
        drops it). A tx the pool does not hold goes through admission again."""
        tx_hash = codec.compute_tx_hash(tx)
        entry = self._entries.get(tx_hash)
        if entry is None:
            return self.add(view, tx, height, rechecked=True)
        try:
            check_tx_state(view, tx, self._genesis, future_nonce_ok=True)
            expected = self._expected.get(entry.signer, self._next.get(entry.signer, 0))
            if tx.nonce > expected:
                raise PoolRejected(
                    PoolReason.NONCE_GAP,
                    f"nonce {tx.nonce}: the mempool no longer holds nonce {expected} of "
                    f"{entry.signer}, so it cannot execute; send the missing nonces again",
                )
        except Rejected:
            self.forget([tx_hash])
            raise
        self._expected[entry.signer] = max(expected, tx.nonce + 1)
        entry.round = self._round
        return tx_hash

    # --- durability: each admitted tx is in the store before its submitter hears "accepted" ---

    def write_unsaved(self) -> None:
        """Write the admitted txs' store writes now (one CheckTx at a time)."""
        seq = self._unsaved_seq
        if seq > self._written_seq:  # CometBFT's CheckTx usually has nothing to write
            self._store.commit(self._take_unsaved())
            self._written_seq = seq

    async def flush(self) -> None:
        """Make every tx admitted so far durable: one RocksDB write, in a worker thread, for
        all the txs added since the last one (group commit); concurrent callers share it."""
        target = self._unsaved_seq
        while self._written_seq < target:
            if self._flush_task is None:
                self._flush_task = asyncio.ensure_future(self._flush_unsaved())
            await asyncio.shield(self._flush_task)

    async def _flush_unsaved(self) -> None:
        try:
            seq = self._unsaved_seq
            if seq > self._written_seq:
                await asyncio.to_thread(self._store.commit, self._take_unsaved())
            self._written_seq = max(self._written_seq, seq)
        finally:
            self._flush_task = None

    async def writes_idle(self) -> None:
        """Wait for an in-flight pool write (a block commit that removes a tx must not be
        overtaken by the write that adds it)."""
        while self._flush_task is not None:
            await asyncio.shield(self._flush_task)

    def take_unsaved(self) -> Commit:
        """The store writes not yet written, for a block's commit to carry (they then count
        as written). Refused while a flush is in flight (await `writes_idle` first)."""
        if self._flush_task is not None:
            raise StorageError("commit while a pool write is in flight (await writes_idle)")
        self._written_seq = self._unsaved_seq
        return self._take_unsaved()

    def _take_unsaved(self) -> Commit:
        unsaved, self._unsaved = self._unsaved, Commit()
        return unsaved

    def _size(self, tx: Transaction) -> int:
        """A tx's bytes, where CometBFT's mempool limits are checked (`mempool_full`); 0
        elsewhere, where nothing reads it."""
        return len(codec.encode(tx)) if self.policy.mempool_txs else 0

    def _insert(
        self, tx_hash: TxHash, tx: Transaction, height: Height, next_nonce: Nonce, size: int
    ) -> None:
        signer = get_signer(tx)
        entry = _Entry(
            tx, signer, next(self._seq), height, spend_of(tx), round=self._round, size=size
        )
        self._entries[tx_hash] = entry
        self._bytes += size
        self._by_sender.setdefault(signer, {})[tx.nonce] = tx_hash
        self._spend[signer] = self._spend.get(signer, 0) + entry.spend
        self._next[signer] = next_nonce
        heapq.heappush(self._all, (*entry.rank, tx_hash))
        self._classify(signer)
        self.registrations += isinstance(tx, TxRegisterModel)

    def expired(self, height: Height) -> list[TxHash]:
        """Txs pending for `ttl_blocks` blocks or more (the caller drops them)."""
        limit = height - self.policy.ttl_blocks
        return [h for h, e in self._entries.items() if e.added_at <= limit]

    # --- reads ------------------------------------------------------------------------------

    def next_nonce(self, view: StateView, account: AccountId) -> Nonce:
        """The nonce a new tx from `account` should carry, counting pending ones."""
        nonce = get_account(view, account).nonce
        pending = self._by_sender.get(account, {})
        while nonce in pending:
            nonce += 1
        return nonce

    def candidates(self) -> list[Transaction]:
        """Pending txs in proposal order (`proposal_order`)."""
        return proposal_order((e.tx, e.seq) for e in self._entries.values())

    def registrations_pending(self) -> list[tuple[TxHash, TxRegisterModel]]:
        """The pending registrations, in arrival order."""
        entries = sorted(self._entries.items(), key=lambda item: item[1].seq)
        return [(h, e.tx) for h, e in entries if isinstance(e.tx, TxRegisterModel)]

    # --- removal ----------------------------------------------------------------------------

    def forget(self, tx_hashes: Iterable[TxHash]) -> None:
        """Drop txs from memory (the caller's Commit removes them from the store)."""
        for tx_hash in tx_hashes:
            entry = self._entries.pop(tx_hash, None)
            if entry is None:
                continue
            self._bytes -= entry.size
            by_nonce = self._by_sender.get(entry.signer, {})
            by_nonce.pop(entry.tx.nonce, None)
            if not by_nonce:
                self._by_sender.pop(entry.signer, None)
                self._next.pop(entry.signer, None)
            else:
                self._classify(entry.signer)  # a gap may have opened
            left = self._spend.get(entry.signer, 0) - entry.spend
            if left > 0 or entry.signer in self._by_sender:
                self._spend[entry.signer] = left
            else:
                self._spend.pop(entry.signer, None)
            self.registrations -= isinstance(entry.tx, TxRegisterModel)


def proposal_order(arrivals: Iterable[tuple[Transaction, int]]) -> list[Transaction]:
    """Txs, each with its arrival number, in the order both drivers propose them: each
    sender's in nonce order (a later nonce cannot execute before an earlier one); across
    senders the higher fee first, then the earlier arrival.

    Fee first is what a sender pays for and what a full block must decide; a global nonce sort
    (CometBFT's path used one before) would put every sender's first tx ahead of any fee, and
    let a flood of fresh accounts push out paying ones. The embedded pool and CometBFT's
    mempool (arrival = its order) go through this one function."""
    queues: dict[AccountId, list[tuple[int, int, Transaction]]] = {}
    for tx, seq in arrivals:
        queues.setdefault(get_signer(tx), []).append((tx.nonce, seq, tx))
    for queue in queues.values():
        queue.sort(key=lambda item: item[:2])
    heap = [(-q[0][2].fee, q[0][1], 0, signer) for signer, q in queues.items()]
    heapq.heapify(heap)
    out: list[Transaction] = []
    while heap:
        _, _, i, signer = heapq.heappop(heap)
        queue = queues[signer]
        out.append(queue[i][2])
        if i + 1 < len(queue):
            _, seq, nxt = queue[i + 1]
            heapq.heappush(heap, (-nxt.fee, seq, i + 1, signer))
    return out
