"""Small builders shared by tests."""

from __future__ import annotations

from authchain.chain import codec
from authchain.chain.types import (
    ZERO_HASH,
    AccountId,
    Block,
    BlockHash,
    Header,
    Transaction,
    TxTransfer,
)

PROPOSER = AccountId(b"\x0a" * 32)


def make_block(
    parent: BlockHash | None, height: int, txs: tuple[Transaction, ...] = (), salt: int = 0
) -> Block:
    """An unsigned block on `parent`; `salt` makes sibling blocks differ."""
    header = Header(
        parent=parent if parent is not None else BlockHash(ZERO_HASH),
        height=height,
        timestamp=1_000 * height + salt,
        proposer=PROPOSER,
        tx_root=codec.compute_tx_root(txs),
        state_root=ZERO_HASH,
    )
    return Block(header, txs)


def make_transfer(nonce: int, amount: int = 1) -> TxTransfer:
    return TxTransfer(b"\x01" * 32, b"\x02" * 32, amount, 0, nonce)  # type: ignore[arg-type]
