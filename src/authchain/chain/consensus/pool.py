"""`TxPool`: CheckTx admission and the persisted set of pending transactions.

Admission runs only cheap checks, never ML: decode (done by the caller), signature and chain id,
nonce not already used, fee and balance, the Aid not registered and not already pending, no
duplicate, room in the pool. Accepted txs are written to the store before `add` returns, so a
restarted node still has them (under CometBFT, whose mempool holds them, the pool is an
in-memory mirror).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from authchain.chain import codec
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.errors import Rejected
from authchain.chain.state import (
    Genesis,
    StateView,
    check_tx_auth,
    check_tx_state,
    get_account,
)
from authchain.chain.types import (
    AccountId,
    Aid,
    Nonce,
    Transaction,
    TxHash,
    TxRegisterModel,
    get_signer,
)


class PoolReason(enum.StrEnum):
    """Why the pool refused a tx that may be valid in itself."""

    POOL_FULL = "pool_full"
    DUPLICATE = "duplicate"
    NONCE_TAKEN = "nonce_taken"
    AID_PENDING = "aid_pending"


class PoolRejected(Rejected):
    """The pool refused a transaction."""

    reason: PoolReason


class TxPool:
    """Pending transactions, in arrival order, mirrored in the store."""

    def __init__(
        self, store: BlockStore, genesis: Genesis, max_size: int, *, persist: bool = True
    ) -> None:
        self._store = store
        self._genesis = genesis
        self.max_size = max_size
        self.persist = persist
        """Mirror the pool in the store (the embedded driver). Under CometBFT the pool is a
        mirror of CometBFT's mempool, which holds the txs, so nothing is written."""
        self._txs: dict[TxHash, Transaction] = dict(store.pool_txs()) if persist else {}

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: TxHash) -> Transaction | None:
        """A pending tx."""
        return self._txs.get(tx_hash)

    def check(self, view: StateView, tx: Transaction) -> TxHash:
        """CheckTx: raise InvalidTx or PoolRejected, or return the tx hash."""
        tx_hash = codec.compute_tx_hash(tx)
        if tx_hash in self._txs:
            raise PoolRejected(PoolReason.DUPLICATE, f"tx {tx_hash} is already pending")
        if len(self._txs) >= self.max_size:
            raise PoolRejected(PoolReason.POOL_FULL, f"pool holds {self.max_size} txs; retry later")
        check_tx_auth(tx, self._genesis)
        check_tx_state(view, tx, self._genesis, future_nonce_ok=True)
        signer = get_signer(tx)
        if any(get_signer(p) == signer and p.nonce == tx.nonce for p in self._txs.values()):
            raise PoolRejected(
                PoolReason.NONCE_TAKEN, f"a pending tx of {signer} already uses nonce {tx.nonce}"
            )
        if isinstance(tx, TxRegisterModel) and tx.aid in self.pending_aids():
            raise PoolRejected(
                PoolReason.AID_PENDING, f"a registration of {tx.aid} is already pending"
            )
        return tx_hash

    def add(self, view: StateView, tx: Transaction) -> TxHash:
        """CheckTx, then persist and keep the tx."""
        tx_hash = self.check(view, tx)
        if self.persist:
            self._store.commit(Commit(pool_add=[tx]))
        self._txs[tx_hash] = tx
        return tx_hash

    def pending_aids(self) -> set[Aid]:
        """Aids with a pending registration."""
        return {tx.aid for tx in self._txs.values() if isinstance(tx, TxRegisterModel)}

    def next_nonce(self, view: StateView, account: AccountId) -> Nonce:
        """The nonce a new tx from `account` should carry, counting pending ones."""
        nonce = get_account(view, account).nonce
        pending = sorted(tx.nonce for tx in self._txs.values() if get_signer(tx) == account)
        for n in pending:
            if n == nonce:
                nonce += 1
        return nonce

    def candidates(self) -> list[Transaction]:
        """Pending txs in proposal order: lower nonces first, then arrival order."""
        arrival = {h: i for i, h in enumerate(self._txs)}
        return [
            self._txs[h] for h in sorted(self._txs, key=lambda h: (self._txs[h].nonce, arrival[h]))
        ]

    def forget(self, tx_hashes: Iterable[TxHash]) -> None:
        """Drop txs from memory (the caller's Commit removes them from the store)."""
        for tx_hash in tx_hashes:
            self._txs.pop(tx_hash, None)
