"""Block stores: in-memory (`MemBlockStore`) and RocksDB (`RocksDbBlockStore`)."""

from authchain.chain.storage.kv import Column, KvBlockStore
from authchain.chain.storage.mem import MemBlockStore
from authchain.chain.storage.rocksdb import RocksDbBlockStore

__all__ = ["Column", "KvBlockStore", "MemBlockStore", "RocksDbBlockStore"]
