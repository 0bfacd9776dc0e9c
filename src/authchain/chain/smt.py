"""The state commitment: a binary sparse Merkle tree over BLAKE3(key), persisted by path.

Why not a library: `trie` (Ethereum's hexary Patricia trie, the maintained Python one) costs
~300 µs per updated key at 50k keys here and 13 s to build 50k; the node's whole per-tx budget
is ~270 µs. This tree does a batch of k updates in O(k log n) BLAKE3 calls with no encoding
layer. (`benchmarks/state.py` measures it.)

The tree is defined by the set of (key, value) pairs alone, whatever the order of updates:

    kh = BLAKE3(key), vh = BLAKE3(value); a leaf sits at bit-path kh (MSB first)
    hash(empty subtree)          = 32 zero bytes
    hash(subtree with one leaf)  = BLAKE3(0x00 || kh || vh), at whatever depth it sits
    hash(subtree with 2+ leaves) = BLAKE3(0x01 || hash(left) || hash(right))

So a leaf sits at the shallowest depth where it is alone: ~log2(n) levels for n keys.

Storage: one record per non-empty subtree that has a parent with two or more leaves, keyed by its
path (depth byte + the prefix bits), in the store's `tree` column: `L || kh || vh` for a leaf,
`N || left hash || right hash` for an inner node. Keyed by path, not by hash: a block overwrites
the nodes it changes in place, so the tree never leaves garbage to collect, and its writes go
into the block's atomic commit. The price: only the latest state can be proven (a proof comes
with the height and app hash it is against).

Proofs: the sibling hashes from the root down to where the key's path ends (its leaf, an empty
subtree, or another key's leaf, which proves absence). `verify_proof` needs only the app hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import blake3
from cachetools import LRUCache

from authchain.chain.errors import StorageError

EMPTY = bytes(32)
_LEAF = b"L"
_NODE = b"N"
NODE_CACHE_SIZE = 1 << 20
"""Decoded tree nodes kept in memory (~2 per key; a miss is one RocksDB read)."""


@dataclass(frozen=True, slots=True)
class Node:
    """A leaf (a = kh, b = vh) or an inner node (a, b = child hashes), with its hash."""

    leaf: bool
    a: bytes
    b: bytes
    hash: bytes

    @staticmethod
    def make_leaf(kh: bytes, vh: bytes) -> Node:
        return Node(True, kh, vh, leaf_hash(kh, vh))

    @staticmethod
    def make_inner(left: bytes, right: bytes) -> Node:
        return Node(False, left, right, inner_hash(left, right))

    def encode(self) -> bytes:
        return (_LEAF if self.leaf else _NODE) + self.a + self.b

    @staticmethod
    def decode(raw: bytes, path: bytes) -> Node:
        if len(raw) != 65 or raw[:1] not in (_LEAF, _NODE):
            raise StorageError("corrupt state tree node", key=path)
        a, b = raw[1:33], raw[33:]
        return Node.make_leaf(a, b) if raw[:1] == _LEAF else Node.make_inner(a, b)


def leaf_hash(kh: bytes, vh: bytes) -> bytes:
    return blake3.blake3(b"\x00" + kh + vh).digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def key_hash(key: bytes) -> bytes:
    return blake3.blake3(key).digest()


def value_hash(value: bytes) -> bytes:
    return blake3.blake3(value).digest()


def bit(kh: bytes, depth: int) -> int:
    """Bit `depth` of the path, most significant first."""
    return (kh[depth >> 3] >> (7 - (depth & 7))) & 1


def path_key(kh: bytes, depth: int) -> bytes:
    """Where the subtree at the first `depth` bits of `kh` is stored."""
    prefix = bytearray(kh[: (depth + 7) >> 3])
    if depth & 7:
        prefix[-1] &= (0xFF << (8 - (depth & 7))) & 0xFF
    return bytes((depth,)) + bytes(prefix)


def _flip(kh: bytes, depth: int) -> bytes:
    """`kh` with bit `depth` inverted: a path into the sibling subtree."""
    flipped = bytearray(kh)
    flipped[depth >> 3] ^= 0x80 >> (depth & 7)
    return bytes(flipped)


# --- the naive definition (genesis, tests) ---------------------------------------------------


def root_of(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The root of the tree holding exactly `items`, computed from scratch."""
    leaves = sorted((key_hash(k), value_hash(v)) for k, v in items)
    return _subtree_hash(leaves, 0)


def _subtree_hash(leaves: list[tuple[bytes, bytes]], depth: int) -> bytes:
    if not leaves:
        return EMPTY
    if len(leaves) == 1:
        return leaf_hash(*leaves[0])
    split = _split(leaves, depth)
    return inner_hash(
        _subtree_hash(leaves[:split], depth + 1), _subtree_hash(leaves[split:], depth + 1)
    )


def _split(sorted_khs: Sequence[tuple[bytes, object]], depth: int) -> int:
    """First index whose bit `depth` is 1 (the entries are sorted and share `depth` bits)."""
    lo, hi = 0, len(sorted_khs)
    while lo < hi:
        mid = (lo + hi) // 2
        if bit(sorted_khs[mid][0], depth):
            hi = mid
        else:
            lo = mid + 1
    return lo


# --- the persisted tree ----------------------------------------------------------------------

NodeReader = Callable[[bytes], bytes | None]
"""Reads one stored node record by path (the store's `tree` column)."""


@dataclass(frozen=True, slots=True)
class TreeUpdate:
    """The result of applying a batch of state writes: the new root and the node writes that
    make it so (path -> record, None deletes), for the block's atomic commit."""

    root: bytes
    changed: dict[bytes, Node | None]

    @property
    def nodes(self) -> dict[bytes, bytes | None]:
        """The node records to write (path -> record; None deletes)."""
        return {p: None if n is None else n.encode() for p, n in self.changed.items()}


@dataclass(frozen=True, slots=True)
class StateProof:
    """Sibling hashes from the root down, and the leaf where the key's path ends (None: an
    empty subtree)."""

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None


class StateTree:
    """The persisted sparse Merkle tree; `update` is pure, `apply` records a committed one."""

    def __init__(self, read: NodeReader) -> None:
        self._read = read
        self._cache: LRUCache[bytes, Node | None] = LRUCache(NODE_CACHE_SIZE)

    def node(self, path: bytes, pending: Mapping[bytes, Node | None] | None = None) -> Node | None:
        if pending is not None and path in pending:
            return pending[path]
        try:
            return self._cache[path]
        except KeyError:
            pass
        raw = self._read(path)
        node = None if raw is None else Node.decode(raw, path)
        self._cache[path] = node
        return node

    def root(self) -> bytes:
        node = self.node(path_key(EMPTY, 0))
        return EMPTY if node is None else node.hash

    def is_empty(self) -> bool:
        return self.node(path_key(EMPTY, 0)) is None

    def update(self, writes: Mapping[bytes, bytes | None]) -> TreeUpdate:
        """The tree after `writes` (key -> value, None deletes), without changing this one."""
        ups = sorted((key_hash(k), None if v is None else value_hash(v)) for k, v in writes.items())
        out: dict[bytes, Node | None] = {}
        if not ups:
            return TreeUpdate(self.root(), out)
        root = _Batch(self, out).apply(0, self.node(path_key(EMPTY, 0)), ups)
        return TreeUpdate(EMPTY if root is None else root.hash, out)

    def apply(self, update: TreeUpdate) -> None:
        """`update` was committed: make the cache agree with the store."""
        for path, node in update.changed.items():
            self._cache[path] = node

    def prove(self, key: bytes) -> StateProof:
        """The proof for `key`'s value, or for its absence."""
        kh = key_hash(key)
        siblings: list[bytes] = []
        node = self.node(path_key(kh, 0))
        depth = 0
        while node is not None and not node.leaf:
            right = bit(kh, depth)
            siblings.append(node.a if right else node.b)
            depth += 1
            node = self.node(path_key(kh, depth))
            if node is None and siblings[-1] == EMPTY:  # a record-less empty side: impossible
                raise StorageError("state tree path ends below an inner node with an empty side")
        return StateProof(tuple(siblings), None if node is None else (node.a, node.b))


class _Batch:
    """One `StateTree.update`: new nodes go to `out`, reads see `out` first."""

    def __init__(self, tree: StateTree, out: dict[bytes, Node | None]) -> None:
        self.tree = tree
        self.out = out

    def put(self, path: bytes, node: Node | None) -> None:
        self.out[path] = node

    def apply(
        self, depth: int, node: Node | None, ups: list[tuple[bytes, bytes | None]]
    ) -> Node | None:
        """The subtree at (depth, ups' common prefix) after `ups`; writes it and below."""
        path = path_key(ups[0][0], depth)
        if node is None or node.leaf:
            leaves: dict[bytes, bytes] = {} if node is None else {node.a: node.b}
            for kh, vh in ups:
                if vh is None:
                    leaves.pop(kh, None)
                else:
                    leaves[kh] = vh
            return self.build(depth, path, sorted(leaves.items()))
        split = _split(ups, depth)
        hashes = [node.a, node.b]
        kids: list[Node | None] = [None, None]
        for side, part in enumerate((ups[:split], ups[split:])):
            if part:
                child_path = path_key(part[0][0], depth + 1)
                old = None if hashes[side] == EMPTY else self.tree.node(child_path, self.out)
                kid = self.apply(depth + 1, old, part)
                kids[side] = kid
                hashes[side] = EMPTY if kid is None else kid.hash
        result: Node | None
        if hashes[0] == EMPTY and hashes[1] == EMPTY:
            result = None
        elif EMPTY in hashes:  # one side left: if it is a single leaf, that leaf moves up here
            side = 0 if hashes[0] != EMPTY else 1
            alone_path = path_key(_toward(ups[0][0], depth, side), depth + 1)
            alone = kids[side] or self.tree.node(alone_path, self.out)
            if alone is None:
                raise StorageError("state tree: a non-empty child has no record", key=alone_path)
            if alone.leaf:
                self.out[alone_path] = None
                result = alone
            else:
                result = Node.make_inner(hashes[0], hashes[1])
        else:
            result = Node.make_inner(hashes[0], hashes[1])
        self.put(path, result)
        return result

    def build(self, depth: int, path: bytes, leaves: list[tuple[bytes, bytes]]) -> Node | None:
        """A fresh subtree holding `leaves` (nothing stored below `path` before)."""
        if not leaves:
            node = None
        elif len(leaves) == 1:
            node = Node.make_leaf(*leaves[0])
        else:
            split = _split(leaves, depth)
            sides = (leaves[:split], leaves[split:])
            hashes = []
            for part in sides:
                if part:
                    sub = self.build(depth + 1, path_key(part[0][0], depth + 1), part)
                    assert sub is not None
                    hashes.append(sub.hash)
                else:
                    hashes.append(EMPTY)
            node = Node.make_inner(hashes[0], hashes[1])
        self.put(path, node)
        return node


def _toward(kh: bytes, depth: int, side: int) -> bytes:
    """A path that shares `kh`'s first `depth` bits and then takes `side`."""
    return kh if bit(kh, depth) == side else _flip(kh, depth)


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    """Whether `proof` shows that the tree with `root` maps `key` to `value` (None: absent)."""
    kh = key_hash(key)
    depth = len(proof.siblings)
    if depth > 255 or any(len(s) != 32 for s in proof.siblings):
        return False
    if proof.leaf is None:
        if value is not None:
            return False
        h = EMPTY
    else:
        leaf_kh, leaf_vh = proof.leaf
        if len(leaf_kh) != 32 or len(leaf_vh) != 32:
            return False
        if value is None:  # absence: another key's leaf on our path
            if leaf_kh == kh or any(bit(leaf_kh, d) != bit(kh, d) for d in range(depth)):
                return False
        elif leaf_kh != kh or leaf_vh != value_hash(value):
            return False
        h = leaf_hash(leaf_kh, leaf_vh)
    for d in reversed(range(depth)):
        sibling = proof.siblings[d]
        h = inner_hash(sibling, h) if bit(kh, d) else inner_hash(h, sibling)
    return h == root
