"""The `BlockStore` protocol (seed `consensus::BlockStore`) and the atomic `Commit` it applies.

A store holds every block it was given (side branches included), the canonical height index,
the tip, the application state (opaque keys and values), the transaction pool, rejection and
claim records, and small metadata. `commit` applies one `Commit` atomically: after a crash the
store holds either all of it or none of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from authchain.chain.types import Block, BlockHash, Height, Transaction, TxHash


@dataclass(slots=True)
class Commit:
    """Everything one step of the chain writes, applied atomically by `BlockStore.commit`."""

    blocks: list[Block] = field(default_factory=list)
    """Blocks to store (canonical or not)."""
    heights: dict[Height, BlockHash | None] = field(default_factory=dict)
    """Canonical height index changes; None removes a height."""
    state: dict[bytes, bytes | None] = field(default_factory=dict)
    """State writes; None deletes the key."""
    tree: dict[bytes, bytes | None] = field(default_factory=dict)
    """State tree node writes (path -> record; None deletes), from `StateTree.update`."""
    pool_add: list[Transaction] = field(default_factory=list)
    pool_remove: set[TxHash] = field(default_factory=set)
    meta: dict[bytes, bytes | None] = field(default_factory=dict)
    tx_index: dict[TxHash, bytes | None] = field(default_factory=dict)
    """Where committed txs are: encode([height, index])."""
    rejected: dict[TxHash, bytes | None] = field(default_factory=dict)
    """Why dropped txs were dropped (canonical `TxRejection` bytes)."""
    claims: dict[TxHash, bytes | None] = field(default_factory=dict)
    """What V_auth said about judged registrations (`authchain.chain.claims`)."""
    tip: BlockHash | None = None
    """New tip, if it changes."""


class BlockStore(Protocol):
    """Persistent (or in-memory) home of blocks, state and pool."""

    def get_block(self, block_hash: BlockHash) -> Block | None:
        """The block with this hash, or None if the store never saw it."""
        ...

    def has_block(self, block_hash: BlockHash) -> bool:
        """Whether the store holds this block."""
        ...

    def get_block_hash(self, height: Height) -> BlockHash | None:
        """Hash of the canonical block at `height`."""
        ...

    def get_block_by_height(self, height: Height) -> Block | None:
        """The canonical block at `height`."""
        ...

    def put_block(self, block: Block) -> BlockHash:
        """Store `block` without changing the tip or the height index."""
        ...

    def tip(self) -> BlockHash | None:
        """Hash of the head of the canonical chain; None for an empty store."""
        ...

    def set_tip(self, block_hash: BlockHash) -> None:
        """Move the tip to a stored block."""
        ...

    def get_state(self, key: bytes) -> bytes | None:
        """One state value."""
        ...

    def iter_state(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """State entries whose key starts with `prefix`, in key order."""
        ...

    def get_meta(self, key: bytes) -> bytes | None:
        """One metadata value."""
        ...

    def get_tree_node(self, path: bytes) -> bytes | None:
        """One state tree node record, by path."""
        ...

    def get_tx_location(self, tx_hash: TxHash) -> tuple[Height, int] | None:
        """Height and index in its block of a committed tx."""
        ...

    def get_rejection(self, tx_hash: TxHash) -> bytes | None:
        """Why a tx was dropped, if it was."""
        ...

    def iter_rejections(self) -> Iterator[tuple[TxHash, bytes]]:
        """Every stored rejection record, in hash order."""
        ...

    def iter_claims(self) -> Iterator[tuple[TxHash, bytes]]:
        """Every stored claim record, in hash order."""
        ...

    def pool_txs(self) -> Iterator[tuple[TxHash, Transaction]]:
        """Persisted pool transactions, in hash order."""
        ...

    def commit(self, commit: Commit) -> None:
        """Apply `commit` atomically."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...
