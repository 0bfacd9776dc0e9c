"""The state tree (`authchain.chain.smt`): its root is the root of a from-scratch build over the
same entries after any history of writes and deletes, persisted or not; its proofs verify, and
tampered proofs do not. Across a SIGKILL: tests/integration/test_smt_crash.py."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authchain.chain import smt
from authchain.chain.consensus.store import Commit
from authchain.chain.storage.mem import MemBlockStore
from authchain.chain.storage.rocksdb import RocksDbBlockStore

KEYS = [b"acct/%d" % i for i in range(60)]

writes_st = st.dictionaries(st.sampled_from(KEYS), st.none() | st.binary(max_size=6), max_size=25)


class DictTree:
    """A tree over a dict of node records, applying each update as a commit would."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}
        self.tree = smt.StateTree(self.nodes.get)
        self.state: dict[bytes, bytes] = {}

    def write(self, writes: dict[bytes, bytes | None]) -> bytes:
        update = self.tree.update(writes)
        for path, raw in update.nodes.items():
            if raw is None:
                self.nodes.pop(path, None)
            else:
                self.nodes[path] = raw
        self.tree.apply(update)
        for key, value in writes.items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        return update.root


@settings(max_examples=60, deadline=None)
@given(st.lists(writes_st, max_size=12))
def test_root_equals_a_fresh_build_after_any_history(
    history: list[dict[bytes, bytes | None]],
) -> None:
    t = DictTree()
    for writes in history:
        root = t.write(writes)
        assert root == smt.root_of(t.state.items())
        assert t.tree.root() == root
    # no garbage: the stored records are exactly those of a tree built in one batch
    fresh = DictTree()
    fresh.write(dict(t.state))
    assert fresh.nodes == t.nodes
    # a cold tree over the same records agrees (nothing lives only in the cache)
    assert smt.StateTree(t.nodes.get).root() == smt.root_of(t.state.items())


@settings(max_examples=40, deadline=None)
@given(st.lists(writes_st, min_size=1, max_size=6), st.sampled_from(KEYS))
def test_proofs_verify_for_present_and_absent_keys(
    history: list[dict[bytes, bytes | None]], key: bytes
) -> None:
    t = DictTree()
    for writes in history:
        t.write(writes)
    root = t.tree.root()
    proof = t.tree.prove(key)
    value = t.state.get(key)
    assert smt.verify_proof(root, key, value, proof)
    # the same proof cannot claim another value, or absence of a present key
    assert not smt.verify_proof(root, key, (value or b"") + b"!", proof)
    if value is not None:
        assert not smt.verify_proof(root, key, None, proof)
    else:
        assert not smt.verify_proof(root, key, b"", proof)


def test_tampered_proofs_fail() -> None:
    t = DictTree()
    t.write({key: b"v" + key for key in KEYS})
    root = t.tree.root()
    key = KEYS[7]
    proof = t.tree.prove(key)
    assert smt.verify_proof(root, key, b"v" + key, proof)
    assert len(proof.siblings) >= 3 and proof.leaf is not None
    flipped = bytearray(proof.siblings[1])
    flipped[0] ^= 1
    bad = [
        smt.StateProof((*proof.siblings[:1], bytes(flipped), *proof.siblings[2:]), proof.leaf),
        smt.StateProof(proof.siblings[1:], proof.leaf),  # the leaf claimed one level up
        smt.StateProof((*proof.siblings, smt.EMPTY), proof.leaf),  # one level down
        smt.StateProof(proof.siblings, None),
        smt.StateProof(proof.siblings, (proof.leaf[0], smt.value_hash(b"other"))),
    ]
    for p in bad:
        assert not smt.verify_proof(root, key, b"v" + key, p)
        assert not smt.verify_proof(root, key, None, p)
    # another key's leaf never proves this key absent unless it lies on this key's path
    other = t.tree.prove(KEYS[8])
    assert not smt.verify_proof(root, key, None, other)
    assert not smt.verify_proof(smt.EMPTY, key, b"v" + key, proof)


def test_empty_tree_proves_absence() -> None:
    t = DictTree()
    assert t.tree.root() == smt.EMPTY == smt.root_of([])
    assert smt.verify_proof(smt.EMPTY, b"acct/x", None, t.tree.prove(b"acct/x"))
    t.write({b"a": b"1"})
    t.write({b"a": None})
    assert t.tree.root() == smt.EMPTY and t.nodes == {}


def test_batch_cost_is_logarithmic_in_state_size() -> None:
    """Counted, not timed: one changed key rewrites one node per level (~log2 n)."""
    t = DictTree()
    t.write({b"acct/%d" % i: b"x" for i in range(20_000)})
    update = t.tree.update({b"acct/17": b"y"})
    assert len(update.nodes) <= 40  # log2(20k) ~ 14.3, plus the expected shared prefix


@pytest.mark.parametrize("store_kind", ["mem", "rocksdb"])
def test_store_commit_and_reopen(store_kind: str, tmp_path: Path) -> None:
    def open_store() -> MemBlockStore | RocksDbBlockStore:
        return MemBlockStore() if store_kind == "mem" else RocksDbBlockStore(tmp_path / "db")

    rng = random.Random(7)
    store = open_store()
    state: dict[bytes, bytes] = {}
    for _ in range(30):
        writes = _random_writes(rng)
        tree = smt.StateTree(store.get_tree_node)
        update = tree.update(writes)
        store.commit(Commit(state=writes, tree=update.nodes))
        _apply(state, writes)
        assert smt.StateTree(store.get_tree_node).root() == smt.root_of(state.items())
    if store_kind == "rocksdb":
        store.close()
        store = open_store()
        assert smt.StateTree(store.get_tree_node).root() == smt.root_of(store.iter_state())
    store.close()


def _random_writes(rng: random.Random) -> dict[bytes, bytes | None]:
    return {
        b"k%d" % rng.randrange(400): None
        if rng.random() < 0.25
        else rng.randbytes(rng.randrange(9))
        for _ in range(rng.randint(0, 60))
    }


def _apply(state: dict[bytes, bytes], writes: dict[bytes, bytes | None]) -> None:
    for key, value in writes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
