"""`KvBlockStore`: the `BlockStore` logic over any ordered key-value backend.

Both stores share this code, so they cannot disagree: the memory store and the RocksDB store
differ only in their `KvBackend`. Records are checked when read — a block must decode and hash
to its key, an index entry must be 32 bytes — and a bad record raises `StorageError` naming
the key. It is never turned into "missing".
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import Protocol

from authchain.chain import codec
from authchain.chain.consensus.store import Commit
from authchain.chain.errors import DecodeError, InvalidField, StorageError
from authchain.chain.types import Block, BlockHash, Height, Transaction, TxHash

TIP_KEY = b"tip"


class Column(enum.StrEnum):
    """Column families (RocksDB) or namespaces (memory)."""

    BLOCKS = "blocks"  # block hash -> canonical block bytes
    HEIGHTS = "heights"  # 8-byte big-endian height -> block hash (canonical chain)
    META = "meta"  # small named values: tip, genesis hash, ...
    STATE = "state"  # application state, opaque to the store
    POOL = "pool"  # tx hash -> canonical tx bytes
    TX_INDEX = "tx_index"  # tx hash -> encode([height, index]) for committed txs
    REJECTED = "rejected"  # tx hash -> encode(TxRejection)
    TREE = "tree"  # state tree node path -> node record (`authchain.chain.smt`)
    CLAIMS = "claims"  # tx hash -> msgpack ClaimRecord (`authchain.chain.claims`)


Op = tuple[Column, bytes, bytes | None]
"""One write: put `value` at `key` in `column`, or delete it when value is None."""


class KvBackend(Protocol):
    """An ordered key-value store with atomic multi-column writes."""

    def get(self, column: Column, key: bytes) -> bytes | None: ...

    def scan(self, column: Column, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def write(self, ops: Sequence[Op]) -> None: ...

    def close(self) -> None: ...


def height_key(height: Height) -> bytes:
    """Height index key: big-endian, so keys sort by height."""
    return height.to_bytes(8, "big")


class KvBlockStore:
    """`BlockStore` over a `KvBackend`."""

    def __init__(self, backend: KvBackend) -> None:
        self._kv = backend

    # --- blocks ---------------------------------------------------------------------------

    def get_block(self, block_hash: BlockHash) -> Block | None:
        raw = self._kv.get(Column.BLOCKS, block_hash)
        if raw is None:
            return None
        try:
            block = codec.decode_block(raw)
        except DecodeError as exc:
            raise StorageError(f"corrupt block record: {exc}", key=block_hash) from exc
        if codec.compute_block_hash(block.header) != block_hash:
            raise StorageError("corrupt block record: hash does not match key", key=block_hash)
        return block

    def has_block(self, block_hash: BlockHash) -> bool:
        return self._kv.get(Column.BLOCKS, block_hash) is not None

    def get_block_hash(self, height: Height) -> BlockHash | None:
        if not 0 <= height < 2**64:  # no such height can be stored
            return None
        key = height_key(height)
        return self._read_hash(Column.HEIGHTS, key, f"height index entry {height}")

    def get_block_by_height(self, height: Height) -> Block | None:
        block_hash = self.get_block_hash(height)
        if block_hash is None:
            return None
        block = self.get_block(block_hash)
        if block is None:
            raise StorageError(f"height {height} indexes a missing block", key=block_hash)
        return block

    def put_block(self, block: Block) -> BlockHash:
        block_hash = codec.compute_block_hash(block.header)
        self._kv.write([(Column.BLOCKS, block_hash, codec.encode(block))])
        return block_hash

    # --- tip ------------------------------------------------------------------------------

    def tip(self) -> BlockHash | None:
        return self._read_hash(Column.META, TIP_KEY, "tip")

    def set_tip(self, block_hash: BlockHash) -> None:
        self.commit(Commit(tip=block_hash))

    # --- state, meta ----------------------------------------------------------------

    def get_state(self, key: bytes) -> bytes | None:
        return self._kv.get(Column.STATE, key)

    def iter_state(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self._kv.scan(Column.STATE, prefix)

    def get_meta(self, key: bytes) -> bytes | None:
        return self._kv.get(Column.META, key)

    def get_tree_node(self, path: bytes) -> bytes | None:
        return self._kv.get(Column.TREE, path)

    def get_tx_location(self, tx_hash: TxHash) -> tuple[Height, int] | None:
        raw = self._kv.get(Column.TX_INDEX, tx_hash)
        if raw is None:
            return None
        try:
            location: tuple[int, int] = codec.decode(raw, tuple[int, int])
            return location
        except (DecodeError, InvalidField) as exc:
            raise StorageError(f"corrupt tx index entry: {exc}", key=tx_hash) from exc

    def get_rejection(self, tx_hash: TxHash) -> bytes | None:
        return self._kv.get(Column.REJECTED, tx_hash)

    # --- pool -----------------------------------------------------------------------------

    def iter_rejections(self) -> Iterator[tuple[TxHash, bytes]]:
        for key, raw in self._kv.scan(Column.REJECTED, b""):
            yield TxHash(key), raw

    def iter_claims(self) -> Iterator[tuple[TxHash, bytes]]:
        for key, raw in self._kv.scan(Column.CLAIMS, b""):
            yield TxHash(key), raw

    def pool_txs(self) -> Iterator[tuple[TxHash, Transaction]]:
        for key, raw in self._kv.scan(Column.POOL, b""):
            try:
                tx: Transaction = codec.decode(raw, Transaction)
            except DecodeError as exc:
                raise StorageError(f"corrupt pool record: {exc}", key=key) from exc
            tx_hash = codec.compute_tx_hash(tx)
            if tx_hash != key:
                raise StorageError("corrupt pool record: hash does not match key", key=key)
            yield tx_hash, tx

    # --- atomic commit --------------------------------------------------------------------

    def commit(self, commit: Commit) -> None:
        ops: list[Op] = []
        for block in commit.blocks:
            ops.append((Column.BLOCKS, codec.compute_block_hash(block.header), codec.encode(block)))
        for height, block_hash in commit.heights.items():
            ops.append((Column.HEIGHTS, height_key(height), block_hash))
        ops.extend((Column.STATE, key, value) for key, value in commit.state.items())
        ops.extend((Column.TREE, key, value) for key, value in commit.tree.items())
        for tx in commit.pool_add:
            ops.append((Column.POOL, codec.compute_tx_hash(tx), codec.encode(tx)))
        ops.extend((Column.POOL, tx_hash, None) for tx_hash in commit.pool_remove)
        ops.extend((Column.META, key, value) for key, value in commit.meta.items())
        ops.extend((Column.TX_INDEX, key, value) for key, value in commit.tx_index.items())
        ops.extend((Column.REJECTED, key, value) for key, value in commit.rejected.items())
        ops.extend((Column.CLAIMS, key, value) for key, value in commit.claims.items())
        if commit.tip is not None:
            if not self.has_block(commit.tip) and all(
                codec.compute_block_hash(b.header) != commit.tip for b in commit.blocks
            ):
                raise StorageError(
                    "cannot set the tip to a block the store does not hold", key=commit.tip
                )
            ops.append((Column.META, TIP_KEY, commit.tip))
        self._kv.write(ops)

    def close(self) -> None:
        self._kv.close()

    # --- helpers --------------------------------------------------------------------------

    def _read_hash(self, column: Column, key: bytes, what: str) -> BlockHash | None:
        raw = self._kv.get(column, key)
        if raw is None:
            return None
        try:
            return BlockHash(raw, field=what)
        except InvalidField as exc:
            raise StorageError(f"corrupt {what}: {exc.message}", key=key) from exc
