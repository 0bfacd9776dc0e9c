"""The same BlockStore suite against the memory store and a real RocksDB in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authchain.chain import codec
from authchain.chain.consensus.store import BlockStore, Commit
from authchain.chain.errors import StorageError
from authchain.chain.storage import Column, KvBlockStore, MemBlockStore, RocksDbBlockStore
from authchain.chain.storage.kv import height_key
from authchain.chain.types import BlockHash, Height
from tests.support.chain import make_block, make_transfer


@pytest.fixture(params=["mem", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KvBlockStore]:
    s: KvBlockStore = (
        MemBlockStore() if request.param == "mem" else RocksDbBlockStore(tmp_path / "db")
    )
    yield s
    s.close()


def _chain(store: BlockStore, n: int) -> list[BlockHash]:
    hashes: list[BlockHash] = []
    parent = None
    for h in range(n):
        block = make_block(parent, h, (make_transfer(h),))
        parent = codec.compute_block_hash(block.header)
        store.commit(Commit(blocks=[block], heights={Height(h): parent}, tip=parent))
        hashes.append(parent)
    return hashes


def test_empty_store(store: KvBlockStore) -> None:
    assert store.tip() is None
    assert store.get_block_by_height(Height(0)) is None
    assert store.get_block(BlockHash(b"\x00" * 32)) is None
    assert list(store.pool_txs()) == []


def test_put_and_get_by_hash_and_height(store: KvBlockStore) -> None:
    hashes = _chain(store, 3)
    assert store.tip() == hashes[-1]
    for h, block_hash in enumerate(hashes):
        block = store.get_block(block_hash)
        assert block is not None and block.header.height == h
        assert store.get_block_hash(Height(h)) == block_hash
        assert store.get_block_by_height(Height(h)) == block
    assert store.get_block_by_height(Height(3)) is None


def test_put_block_does_not_move_tip(store: KvBlockStore) -> None:
    hashes = _chain(store, 2)
    side = make_block(hashes[0], 1, salt=1)
    side_hash = store.put_block(side)
    assert store.has_block(side_hash)
    assert store.tip() == hashes[1]
    assert store.get_block_hash(Height(1)) == hashes[1]
    store.set_tip(side_hash)
    assert store.tip() == side_hash


def test_set_tip_to_unknown_block_is_refused(store: KvBlockStore) -> None:
    _chain(store, 1)
    with pytest.raises(StorageError, match="does not hold"):
        store.set_tip(BlockHash(b"\x77" * 32))


def test_commit_writes_state_meta_pool_together(store: KvBlockStore) -> None:
    tx1, tx2 = make_transfer(1), make_transfer(2)
    store.commit(Commit(pool_add=[tx1, tx2]))
    block = make_block(None, 0, (tx1,))
    block_hash = codec.compute_block_hash(block.header)
    store.commit(
        Commit(
            blocks=[block],
            heights={Height(0): block_hash},
            state={b"acct/a": b"1", b"acct/b": b"2", b"other": b"3"},
            pool_remove={codec.compute_tx_hash(tx1)},
            meta={b"genesis": bytes(block_hash)},
            tip=block_hash,
        )
    )
    assert store.tip() == block_hash
    assert store.get_state(b"acct/a") == b"1"
    assert list(store.iter_state(b"acct/")) == [(b"acct/a", b"1"), (b"acct/b", b"2")]
    assert store.get_meta(b"genesis") == block_hash
    assert [h for h, _ in store.pool_txs()] == [codec.compute_tx_hash(tx2)]
    store.commit(Commit(state={b"acct/a": None}, heights={Height(0): None}))
    assert store.get_state(b"acct/a") is None
    assert store.get_block_hash(Height(0)) is None


def test_failed_commit_writes_nothing(store: KvBlockStore) -> None:
    hashes = _chain(store, 1)
    with pytest.raises(StorageError):
        store.commit(Commit(state={b"k": b"v"}, tip=BlockHash(b"\x55" * 32)))
    assert store.get_state(b"k") is None
    assert store.tip() == hashes[0]


def _raw(store: KvBlockStore) -> object:
    return store.backend  # type: ignore[attr-defined]


def test_corrupt_block_record_raises_naming_the_key(store: KvBlockStore) -> None:
    hashes = _chain(store, 2)
    _raw(store).put_raw(Column.BLOCKS, hashes[1], b"\x93garbage")  # type: ignore[attr-defined]
    with pytest.raises(StorageError) as info:
        store.get_block(hashes[1])
    assert hashes[1].hex() in str(info.value)
    assert info.value.key == hashes[1]
    with pytest.raises(StorageError):
        store.get_block_by_height(Height(1))


def test_block_record_under_the_wrong_key_is_corrupt(store: KvBlockStore) -> None:
    hashes = _chain(store, 2)
    good = codec.encode(store.get_block(hashes[0]))
    _raw(store).put_raw(Column.BLOCKS, hashes[1], good)  # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="hash does not match key"):
        store.get_block(hashes[1])


def test_corrupt_tip_and_height_index(store: KvBlockStore) -> None:
    _chain(store, 1)
    _raw(store).put_raw(Column.META, b"tip", b"short")  # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="corrupt tip"):
        store.tip()
    _raw(store).put_raw(Column.HEIGHTS, height_key(Height(0)), b"\x01\x02")  # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="corrupt height index entry 0"):
        store.get_block_by_height(Height(0))


def test_corrupt_pool_record(store: KvBlockStore) -> None:
    tx = make_transfer(1)
    store.commit(Commit(pool_add=[tx]))
    _raw(store).put_raw(Column.POOL, codec.compute_tx_hash(tx), b"\xc1")  # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="corrupt pool record"):
        list(store.pool_txs())


def test_height_index_pointing_at_missing_block(store: KvBlockStore) -> None:
    _raw(store).put_raw(Column.HEIGHTS, height_key(Height(4)), b"\x66" * 32)  # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="missing block"):
        store.get_block_by_height(Height(4))


# --- RocksDB only -------------------------------------------------------------------------


def test_rocksdb_reopen_keeps_tip_blocks_state_and_pool(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = RocksDbBlockStore(path)
    hashes = _chain(store, 5)
    pending = make_transfer(99)
    store.commit(Commit(pool_add=[pending], state={b"s": b"v"}))
    blocks = [store.get_block(h) for h in hashes]
    store.close()

    reopened = RocksDbBlockStore(path, create_if_missing=False)
    try:
        assert reopened.tip() == hashes[-1]
        assert [reopened.get_block(h) for h in hashes] == blocks
        assert [reopened.get_block_hash(Height(i)) for i in range(5)] == hashes
        assert reopened.get_state(b"s") == b"v"
        assert [tx for _, tx in reopened.pool_txs()] == [pending]
    finally:
        reopened.close()


def test_rocksdb_missing_database_without_create(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="create_if_missing=false"):
        RocksDbBlockStore(tmp_path / "nope", create_if_missing=False)
    assert not (tmp_path / "nope").exists()


def test_rocksdb_second_open_is_a_clear_error(tmp_path: Path) -> None:
    store = RocksDbBlockStore(tmp_path / "db")
    try:
        with pytest.raises(StorageError, match="cannot open RocksDB"):
            RocksDbBlockStore(tmp_path / "db")
    finally:
        store.close()


def test_rocksdb_values_are_never_unpickled(tmp_path: Path) -> None:
    import pickle

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("unpickled!",))

    store = RocksDbBlockStore(tmp_path / "db")
    try:
        store.backend.put_raw(Column.STATE, b"k", pickle.dumps(Boom()))
        value = store.get_state(b"k")
        assert isinstance(value, bytes) and value.startswith(b"\x80")
    finally:
        store.close()
