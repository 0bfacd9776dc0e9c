"""Block header and block (seed `types/block.rs`).

The block hash is BLAKE3 of the canonical header bytes; the header commits to the transactions
through `tx_root` (a Merkle root over their hashes) and to the resulting state through
`state_root`. The proposer signs the block hash (see `authchain.chain.crypto.sign_block`).
"""

from __future__ import annotations

from authchain.chain.types.ids import AccountId, BlockHash, Hash256, Height, TimestampMs
from authchain.chain.types.record import Record
from authchain.chain.types.tx import Transaction


class Header(Record, frozen=True):
    """What the block hash commits to."""

    parent: BlockHash
    height: Height
    timestamp: TimestampMs
    proposer: AccountId
    tx_root: Hash256
    state_root: Hash256
    pos_proof: bytes = b""
    """Opaque proof of the right to propose; empty under proof-of-authority."""


class Block(Record, frozen=True):
    """A header, its transactions, and the proposer's signature over the block hash."""

    header: Header
    txs: tuple[Transaction, ...] = ()
    signature: bytes = b""
