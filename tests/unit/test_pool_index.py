"""CheckTx on a full pool costs the same however full it is (issue 23): the eviction rule keeps
its stuck txs in an index, so picking a victim reads no state per pooled tx. The rule itself
is unchanged: over random histories (arrivals, evictions, blocks that move nonces) the index
picks exactly what the old scan over every pooled tx, with a state read each, picked."""

from __future__ import annotations

import contextlib
import random

from authchain.chain import codec
from authchain.chain.consensus.pool import PoolPolicy, PoolRejected, TxPool
from authchain.chain.state import ACCOUNT_PREFIX, Account, StateView, get_account
from authchain.chain.storage import MemBlockStore
from authchain.chain.types import AccountId, Transaction, TxHash, TxTransfer, get_signer
from tests.support.chain import VALIDATOR, CountingState, make_genesis


def set_account(state: CountingState, account: AccountId, balance: int, nonce: int) -> None:
    state.entries[ACCOUNT_PREFIX + account] = codec.encode(Account(balance, nonce))


def account(i: int) -> AccountId:
    return AccountId(i.to_bytes(4, "big") * 8)


def transfer(sender: int, nonce: int, fee: int = 0) -> TxTransfer:
    """Unsigned (the test genesis allows it): what is measured is the pool, not signatures."""
    return TxTransfer(account(sender), VALIDATOR.account, 0, fee, nonce)


def pool_of(size: int) -> tuple[TxPool, CountingState]:
    policy = PoolPolicy(max_txs=size)
    return TxPool(MemBlockStore(), make_genesis(), policy, persist=False), CountingState()


def fill(pool: TxPool, state: CountingState, size: int) -> None:
    """Half the pool stuck (each sender's nonce 1 with nonce 0 missing), half runnable."""
    for i in range(size):
        sender = 1_000 + i
        set_account(state, account(sender), 10, 0)
        pool.add(StateView(state), transfer(sender, nonce=i % 2, fee=i % 7), height=1)


def test_a_checktx_on_a_full_pool_reads_the_same_state_however_big_the_pool() -> None:
    reads = []
    for size in (50, 2_000):
        pool, state = pool_of(size)
        fill(pool, state, size)
        assert len(pool) == size
        set_account(state, account(1), 10, 0)
        state.reads = 0
        pool.add(StateView(state), transfer(1, nonce=0), height=1)  # runnable: evicts
        assert len(pool) == size
        reads.append(state.reads)
    assert reads[0] == reads[1] <= 8, reads


def reference_victim(pool: TxPool, view: StateView, tx: Transaction) -> TxHash | None:
    """The rule as the scan stated it: the lowest-fee, newest stuck tx of another sender if
    `tx` can run or pays more, else the lowest-fee tx if `tx` pays more."""

    def runnable(signer: AccountId, nonce: int) -> bool:
        pending = {e.tx.nonce for e in pool._entries.values() if e.signer == signer}
        return all(n in pending for n in range(get_account(view, signer).nonce, nonce))

    signer = get_signer(tx)
    ranked = sorted((e.tx.fee, -e.seq, h) for h, e in pool._entries.items())
    others = [(r, pool._entries[r[2]]) for r in ranked if pool._entries[r[2]].signer != signer]
    stuck = [r for r, e in others if not runnable(e.signer, e.tx.nonce)]
    if stuck and (runnable(signer, tx.nonce) or tx.fee > stuck[0][0]):
        return stuck[0][2]
    return ranked[0][2] if tx.fee > ranked[0][0] else None


def test_the_index_picks_what_the_scan_picked_over_random_histories() -> None:
    for seed in range(12):
        rng = random.Random(seed)
        pool, state = pool_of(24)
        senders = list(range(1, 13))
        for sender in senders:
            set_account(state, account(sender), 1_000, 0)
        checked = 0
        for step in range(400):
            view = StateView(state)
            if rng.random() < 0.08:  # a block: some senders' next txs commit
                moved = [account(n) for n in senders if rng.random() < 0.4]
                gone: list[TxHash] = []
                for mover in moved:  # also a tx this pool never saw: the nonce moves anyway
                    before = get_account(view, mover)
                    set_account(state, mover, before.balance, before.nonce + 1)
                    pending = pool._by_sender.get(mover, {})
                    gone += [pending[before.nonce]] if before.nonce in pending else []
                pool.forget(gone)
                pool.settle(StateView(state), moved)
                continue
            sender = rng.choice(senders)
            base = get_account(view, account(sender)).nonce
            tx = transfer(sender, nonce=base + rng.randrange(0, 4), fee=rng.randrange(0, 5))
            if len(pool) >= pool.max_size:
                expected = reference_victim(pool, view, tx)
                try:
                    _, victim = pool.check(view, tx)
                except PoolRejected as refused:
                    victim = None if refused.reason == "pool_full" else TxHash(b"\xff" * 32)
                    if refused.reason != "pool_full":
                        continue  # another rule refused it first: nothing to compare
                assert victim == expected, (seed, step)
                checked += 1
            with contextlib.suppress(PoolRejected):
                pool.add(view, tx, height=1)
        assert checked > 20, checked  # the pool really was full, often
