"""Canonical encoding, hashing and Merkle proofs, as properties."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from authchain.chain import codec
from authchain.chain.errors import DecodeError
from authchain.chain.types import (
    AccountId,
    Block,
    Header,
    Transaction,
    TxRegisterModel,
    TxTransfer,
    TxUseModel,
)
from tests.support.strategies import ALL_TYPES, FIELDS, blocks, records, transactions


@pytest.mark.parametrize("kind", ALL_TYPES, ids=lambda k: k.__name__)
@given(data=st.data())
def test_round_trip_every_type(kind: type, data: st.DataObject) -> None:
    value = data.draw(records(kind))
    raw = codec.encode(value)
    back: Any = codec.decode(raw, kind)
    assert codec.encode(back) == raw
    assert back == value or kind is Block  # floats such as -0.0 compare equal to 0.0 anyway


@given(transactions)
def test_round_trip_through_the_transaction_union(tx: Transaction) -> None:
    back: Transaction = codec.decode(codec.encode(tx), Transaction)
    assert type(back) is type(tx)
    assert back == tx


@given(blocks)
def test_block_round_trip(block: Block) -> None:
    raw = codec.encode(block)
    assert codec.encode(codec.decode_block(raw)) == raw


def _swap_field(kind: type, data: st.DataObject) -> tuple[Any, Any, str]:
    fields = data.draw(st.fixed_dictionaries(FIELDS[kind]))
    name = data.draw(st.sampled_from(sorted(FIELDS[kind])))
    other = data.draw(FIELDS[kind][name])
    assume(codec.encode((other,)) != codec.encode((fields[name],)))
    return kind(**fields), kind(**{**fields, name: other}), name


@pytest.mark.parametrize("kind", [TxRegisterModel, TxUseModel, TxTransfer])
@given(data=st.data())
def test_changing_any_tx_field_changes_its_hash(kind: type, data: st.DataObject) -> None:
    a, b, _ = _swap_field(kind, data)
    assert codec.compute_tx_hash(a) != codec.compute_tx_hash(b)


@pytest.mark.parametrize("kind", [TxRegisterModel, TxUseModel, TxTransfer])
@given(data=st.data())
def test_the_memoized_tx_hash_is_the_hash_of_the_bytes(kind: type, data: st.DataObject) -> None:
    """The hash memo (by object identity) never answers for another tx: a copy with one field
    changed, made after the original was hashed, gets the hash of its own bytes."""
    a, b, name = _swap_field(kind, data)
    first = codec.compute_tx_hash(a)
    assert codec.compute_tx_hash(a) == first == codec.hash_bytes(codec.encode(a))
    changed = msgspec.structs.replace(a, **{name: getattr(b, name)})
    assert codec.compute_tx_hash(changed) == codec.hash_bytes(codec.encode(changed))
    with pytest.raises(AttributeError):
        setattr(a, name, getattr(changed, name))  # frozen: the memo's object cannot change
    decoded = codec.decode_tx(codec.encode(changed))  # the hash of the bytes it came from
    assert codec.compute_tx_hash(decoded) == codec.hash_bytes(codec.encode(changed))


@given(data=st.data())
def test_changing_any_header_field_changes_the_block_hash(data: st.DataObject) -> None:
    a, b, _ = _swap_field(Header, data)
    assert codec.compute_block_hash(a) != codec.compute_block_hash(b)


@pytest.mark.parametrize("kind", ALL_TYPES, ids=lambda k: k.__name__)
@given(data=st.data())
def test_changing_any_field_changes_the_encoding_hash(kind: type, data: st.DataObject) -> None:
    a, b, _ = _swap_field(kind, data)
    assert codec.hash_bytes(codec.encode(a)) != codec.hash_bytes(codec.encode(b))


@pytest.mark.parametrize("kind", [TxRegisterModel, TxUseModel, TxTransfer])
@given(data=st.data())
def test_signing_bytes_cover_every_field_but_the_signature(kind: type, data: st.DataObject) -> None:
    a, b, name = _swap_field(kind, data)
    same = codec.tx_signing_bytes(a, "c") == codec.tx_signing_bytes(b, "c")
    assert same == (name == "signature")


@given(transactions)
def test_signing_bytes_bind_the_chain_id(tx: Transaction) -> None:
    assert codec.tx_signing_bytes(tx, "chain-a") != codec.tx_signing_bytes(tx, "chain-b")


@given(transactions, st.binary(min_size=1, max_size=4))
def test_trailing_bytes_are_rejected(tx: Transaction, extra: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(tx) + extra, Transaction)


@given(transactions, st.data())
def test_truncated_bytes_are_rejected(tx: Transaction, data: st.DataObject) -> None:
    raw = codec.encode(tx)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        codec.decode(raw[:cut], Transaction)


def test_non_canonical_encodings_are_rejected() -> None:
    tx = TxTransfer(b"\x01" * 32, b"\x02" * 32, 5, 0, 0)  # type: ignore[arg-type]
    items = msgspec.msgpack.decode(codec.encode(tx))
    # an extra array element that the decoder would otherwise ignore
    with pytest.raises(DecodeError):
        codec.decode(msgspec.msgpack.encode([*items, 0]), Transaction)
    # amount 5 written as a 64-bit integer instead of a positive fixint
    long_int = codec.encode(tx).replace(
        b"\x05\x00\x00", b"\xcf" + (5).to_bytes(8, "big") + b"\x00\x00", 1
    )
    assert codec.decode(codec.encode(tx), Transaction) == tx
    with pytest.raises(DecodeError, match="canonical"):
        codec.decode(long_int, Transaction)


def test_invalid_field_values_are_rejected_on_decode() -> None:
    fields = [3, b"\x01" * 32, b"\x02" * 32, 5, 0, 0, "unsigned", b"", b""]
    assert codec.decode(msgspec.msgpack.encode(fields), Transaction)
    bad = list(fields)
    bad[1] = b"\x01" * 31
    with pytest.raises(DecodeError, match="sender"):
        codec.decode(msgspec.msgpack.encode(bad), Transaction)
    bad = list(fields)
    bad[0] = 9
    with pytest.raises(DecodeError):
        codec.decode(msgspec.msgpack.encode(bad), Transaction)


# --- Merkle ------------------------------------------------------------------------------

leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40)


@given(leaf_lists)
@settings(max_examples=60)
def test_merkle_proof_verifies_for_every_leaf(leaves: list[bytes]) -> None:
    root = codec.merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        proof = codec.merkle_proof(leaves, i)
        assert codec.verify_merkle_proof(leaf, i, len(leaves), proof, root)


@given(leaf_lists, st.data())
def test_merkle_proof_fails_for_wrong_leaf_index_or_root(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1))
    root = codec.merkle_root(leaves)
    proof = codec.merkle_proof(leaves, i)
    wrong_leaf = data.draw(st.binary(min_size=32, max_size=32).filter(lambda b: b != leaves[i]))
    assert not codec.verify_merkle_proof(wrong_leaf, i, n, proof, root)
    j = data.draw(st.integers(0, n))
    assume(j != i and not (j < n and leaves[j] == leaves[i]))
    assert not codec.verify_merkle_proof(leaves[i], j, n, proof, root)
    wrong_root = data.draw(st.binary(min_size=32, max_size=32).filter(lambda b: b != root))
    assert not codec.verify_merkle_proof(leaves[i], i, n, proof, wrong_root)
    if proof:
        tampered = [*proof[:-1], bytes(32)] if proof[-1] != bytes(32) else proof[:-1]
        assert not codec.verify_merkle_proof(leaves[i], i, n, tampered, root)


def test_an_inner_node_cannot_pose_as_a_leaf() -> None:
    leaves = [bytes([i]) * 32 for i in range(4)]
    root = codec.merkle_root(leaves)
    # The left child of the root is H(0x01 || H(0x00||l0) || H(0x00||l1)); presenting
    # (H(0x00||l0) || H(0x00||l1)) as a 64-byte "leaf" must not verify at size 2.
    left = codec.merkle_proof(leaves, 2)[-1]
    right = codec.merkle_proof(leaves, 0)[-1]
    assert not codec.verify_merkle_proof(bytes(left), 0, 2, [bytes(right)], root)


def test_merkle_root_depends_on_order_and_count() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    assert codec.merkle_root([a, b]) != codec.merkle_root([b, a])
    assert codec.merkle_root([a]) != codec.merkle_root([a, a])
    assert codec.merkle_root([]) == codec.hash_bytes(b"")


def test_merkle_proof_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        codec.merkle_proof([b"\x00" * 32], 1)


def test_the_tx_hash_memo_keeps_only_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "TX_HASH_MEMO_SIZE", 4)
    txs = [TxTransfer(AccountId(bytes([i]) * 32), AccountId(b"\1" * 32), 1, 0, i) for i in range(9)]
    for tx in txs:
        codec.compute_tx_hash(tx)
    assert len(codec._tx_hashes) == 4
    assert [entry[0] for entry in codec._tx_hashes.values()] == txs[-4:]


@pytest.mark.parametrize("sha256", [False, True], ids=["blake3", "sha256"])
def test_every_audit_path_verifies_against_its_root(sha256: bool) -> None:
    """`merkle_proof` and `merkle_root` build what `verify_merkle_proof` (RFC 9162's
    algorithm, written apart) accepts, for every leaf of trees of 1 to 17 leaves; with the
    other hash, none verifies."""
    for size in range(1, 18):
        leaves = [bytes([size, i]) * 16 for i in range(size)]
        root = codec.merkle_root(leaves, sha256=sha256)
        for index, leaf in enumerate(leaves):
            path = codec.merkle_proof(leaves, index, sha256=sha256)
            assert codec.verify_merkle_proof(leaf, index, size, path, root, sha256=sha256)
            assert not codec.verify_merkle_proof(leaf, index, size, path, root, sha256=not sha256)
