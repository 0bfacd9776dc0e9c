"""In-memory block store (seed `storage/mem.rs`), for tests and throwaway devnets."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

from authchain.chain.storage.kv import Column, KvBlockStore, Op


class MemBackend:
    """Sorted dicts per column; a lock makes each `write` atomic."""

    def __init__(self) -> None:
        self._data: dict[Column, dict[bytes, bytes]] = {c: {} for c in Column}
        self._lock = threading.Lock()

    def get(self, column: Column, key: bytes) -> bytes | None:
        return self._data[column].get(bytes(key))

    def scan(self, column: Column, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            table = self._data[column]
            keys = sorted(table)
            start = bisect.bisect_left(keys, prefix)
            items = []
            for key in keys[start:]:
                if not key.startswith(prefix):
                    break
                items.append((key, table[key]))
        return iter(items)

    def write(self, ops: Sequence[Op]) -> None:
        with self._lock:
            for column, key, value in ops:
                if value is None:
                    self._data[column].pop(bytes(key), None)
                else:
                    self._data[column][bytes(key)] = bytes(value)

    def put_raw(self, column: Column, key: bytes, value: bytes) -> None:
        """Write bytes unchecked (for corruption tests)."""
        self.write([(column, key, value)])

    def close(self) -> None:
        pass


class MemBlockStore(KvBlockStore):
    """A `BlockStore` that lives and dies with the process."""

    def __init__(self) -> None:
        self.backend = MemBackend()
        super().__init__(self.backend)
