"""RocksDB block store (seed `storage/rocksdb.rs`), through rocksdict in raw mode.

Raw mode matters: rocksdict's default mode pickles values, and nothing we read from disk may
ever be unpickled. Each `write` is one RocksDB WriteBatch written with `sync`, so a commit is
atomic and durable: a killed node restarts with every block and pool tx it acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from authchain.chain.errors import StorageError
from authchain.chain.storage.kv import Column, KvBlockStore, Op


def _options(create_if_missing: bool) -> Any:
    opts = Options(raw_mode=True)
    opts.create_if_missing(create_if_missing)
    opts.create_missing_column_families(True)
    return opts


class RocksDbBackend:
    """One RocksDB database with a column family per `Column`."""

    def __init__(self, path: Path, *, create_if_missing: bool = True, sync: bool = True) -> None:
        self.path = Path(path)
        if not create_if_missing and not (self.path / "CURRENT").exists():
            raise StorageError(f"no RocksDB database at {self.path} and create_if_missing=false")
        if create_if_missing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Rdict(
                str(self.path),
                _options(create_if_missing),
                column_families={c.value: Options(raw_mode=True) for c in Column},
            )
        except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
            raise StorageError(f"cannot open RocksDB at {self.path}: {exc}") from exc
        self._cf = {c: self._db.get_column_family(c.value) for c in Column}
        self._handles = {c: self._db.get_column_family_handle(c.value) for c in Column}
        self._write_opts = WriteOptions()
        self._write_opts.sync = sync
        self._closed = False

    def get(self, column: Column, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._cf[column].get(bytes(key))
        except Exception as exc:
            raise StorageError(f"RocksDB read failed in {column}: {exc}", key=key) from exc
        return value

    def scan(self, column: Column, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        try:
            # raw mode: keys and values are bytes
            for key, value in cast(
                Iterator[tuple[bytes, bytes]], self._cf[column].items(from_key=prefix)
            ):
                if not key.startswith(prefix):
                    break
                yield key, value
        except Exception as exc:
            raise StorageError(f"RocksDB scan failed in {column}: {exc}") from exc

    def write(self, ops: Sequence[Op]) -> None:
        batch = WriteBatch(raw_mode=True)
        for column, key, value in ops:
            if value is None:
                batch.delete(bytes(key), self._handles[column])
            else:
                batch.put(bytes(key), bytes(value), self._handles[column])
        try:
            self._db.write(batch, self._write_opts)
        except Exception as exc:
            raise StorageError(f"RocksDB write failed: {exc}") from exc

    def put_raw(self, column: Column, key: bytes, value: bytes) -> None:
        """Write bytes unchecked (for corruption tests)."""
        self.write([(column, key, value)])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for cf in self._cf.values():
            cf.close()  # column family handles hold the DB lock until closed
        self._cf.clear()
        self._handles.clear()
        self._db.close()


class RocksDbBlockStore(KvBlockStore):
    """A `BlockStore` persisted in RocksDB at `path`."""

    def __init__(self, path: Path, *, create_if_missing: bool = True, sync: bool = True) -> None:
        self.backend = RocksDbBackend(path, create_if_missing=create_if_missing, sync=sync)
        super().__init__(self.backend)
