"""Signatures: what verifies, and every way a signature must fail."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest

from authchain.chain import codec, crypto
from authchain.chain.crypto import (
    KeyPair,
    read_key_file,
    sign_block,
    sign_tx,
    verify_block_signature,
    verify_tx,
    write_key_file,
)
from authchain.chain.errors import SignatureError
from authchain.chain.types import (
    ZERO_HASH,
    Aid,
    Block,
    BlockHash,
    EvidenceHash,
    EvidenceRef,
    Header,
    SigScheme,
    TxRegisterModel,
    TxTransfer,
    WmProfile,
)

CHAIN = "authchain-test"
SCHEMES = [SigScheme.ML_DSA_65, SigScheme.ED25519]


@pytest.fixture(scope="module", params=SCHEMES, ids=lambda s: s.value)
def key(request: pytest.FixtureRequest) -> KeyPair:
    return KeyPair.from_seed(request.param, bytes(range(32)))


def _register(key: KeyPair) -> TxRegisterModel:
    evidence = EvidenceRef(
        "multi_factor_v2", EvidenceHash(b"\xee" * 32), WmProfile(0.9, 0.2, -0.05, 0.05)
    )
    return TxRegisterModel(key.account, Aid(b"\xaa" * 32), evidence, fee=1, nonce=7)


def test_signed_tx_verifies(key: KeyPair) -> None:
    tx = sign_tx(_register(key), key, CHAIN)
    assert tx.sig_scheme is key.scheme
    assert tx.public_key == key.public_key
    verify_tx(tx, CHAIN)
    verify_tx(codec.decode(codec.encode(tx), TxRegisterModel), CHAIN)


@pytest.mark.parametrize(
    "field,value",
    [
        ("aid", Aid(b"\xab" * 32)),
        ("fee", 2),
        ("nonce", 8),
        (
            "evidence",
            EvidenceRef(
                "multi_factor_v2", EvidenceHash(b"\xee" * 32), WmProfile(0.5, 0.2, -0.05, 0.05)
            ),
        ),
    ],
)
def test_tampered_field_fails(key: KeyPair, field: str, value: object) -> None:
    tx = sign_tx(_register(key), key, CHAIN)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_tx(msgspec.structs.replace(tx, **{field: value}), CHAIN)


def test_other_chain_id_fails(key: KeyPair) -> None:
    tx = sign_tx(_register(key), key, CHAIN)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_tx(tx, CHAIN + "-fork")


def test_public_key_of_someone_else_fails(key: KeyPair) -> None:
    other = KeyPair.from_seed(key.scheme, b"\x01" * 32)
    tx = sign_tx(_register(key), key, CHAIN)
    with pytest.raises(SignatureError, match="does not hash to the signer"):
        verify_tx(msgspec.structs.replace(tx, public_key=other.public_key), CHAIN)


def test_owner_swapped_to_match_another_key_fails(key: KeyPair) -> None:
    other = KeyPair.from_seed(key.scheme, b"\x01" * 32)
    tx = sign_tx(_register(key), key, CHAIN)
    stolen = msgspec.structs.replace(tx, owner=other.account, public_key=other.public_key)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_tx(stolen, CHAIN)


def test_wrong_scheme_label_fails(key: KeyPair) -> None:
    tx = sign_tx(_register(key), key, CHAIN)
    wrong = SigScheme.ED25519 if key.scheme is SigScheme.ML_DSA_65 else SigScheme.ML_DSA_65
    with pytest.raises(SignatureError):
        verify_tx(msgspec.structs.replace(tx, sig_scheme=wrong), CHAIN)


def test_signature_from_other_key_of_same_scheme_fails(key: KeyPair) -> None:
    other = KeyPair.from_seed(key.scheme, b"\x02" * 32)
    tx = sign_tx(_register(key), key, CHAIN)
    forged = msgspec.structs.replace(tx, signature=other.sign(codec.tx_signing_bytes(tx, CHAIN)))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_tx(forged, CHAIN)


@pytest.mark.parametrize("cut", [1, 10])
def test_truncated_signature_fails(key: KeyPair, cut: int) -> None:
    tx = sign_tx(_register(key), key, CHAIN)
    with pytest.raises(SignatureError, match="signature must be"):
        verify_tx(msgspec.structs.replace(tx, signature=tx.signature[:-cut]), CHAIN)


def test_unsigned_tx_fails() -> None:
    key = KeyPair.from_seed(SigScheme.ED25519, b"\x03" * 32)
    with pytest.raises(SignatureError, match="unsigned"):
        verify_tx(_register(key), CHAIN)


def test_cannot_sign_for_another_account(key: KeyPair) -> None:
    tx = TxTransfer(b"\x09" * 32, key.account, 1, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="cannot sign"):
        sign_tx(tx, key, CHAIN)


def test_block_signature(key: KeyPair) -> None:
    header = Header(
        parent=BlockHash(ZERO_HASH), height=1, timestamp=1000, proposer=key.account,
        tx_root=codec.compute_tx_root([]), state_root=ZERO_HASH,
    )  # fmt: skip
    block = sign_block(Block(header), key, CHAIN)
    verify_block_signature(block, key.scheme, key.public_key, CHAIN)
    with pytest.raises(SignatureError):
        verify_block_signature(block, key.scheme, key.public_key, CHAIN + "x")
    moved = msgspec.structs.replace(block, header=msgspec.structs.replace(header, height=2))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_block_signature(moved, key.scheme, key.public_key, CHAIN)
    other = KeyPair.from_seed(key.scheme, b"\x05" * 32)
    with pytest.raises(SignatureError, match="proposer"):
        verify_block_signature(block, other.scheme, other.public_key, CHAIN)


def test_key_seed_is_deterministic(key: KeyPair) -> None:
    again = KeyPair.from_seed(key.scheme, key.seed)
    assert again.public_key == key.public_key
    assert again.account == codec.compute_account_id(key.public_key)


def test_key_file_round_trip_and_mode(tmp_path: Path, key: KeyPair) -> None:
    path = tmp_path / "sub" / "k.key"
    old = os.umask(0)  # the mode must not depend on the caller's umask
    try:
        write_key_file(path, key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == key
    with pytest.raises(FileExistsError):
        write_key_file(path, key)


def test_key_file_with_mismatched_account_is_refused(tmp_path: Path, key: KeyPair) -> None:
    path = tmp_path / "k.key"
    write_key_file(path, key)
    path.write_text(path.read_text().replace(key.account.hex(), "00" * 32))
    with pytest.raises(SignatureError, match="does not match"):
        read_key_file(path)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text("{not json")
    with pytest.raises(SignatureError, match="cannot read key file"):
        read_key_file(path)


def test_a_signature_is_verified_once_and_a_tampered_tx_is_never_served_the_cached_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x31" * 32)
    tx = crypto.sign_tx(TxTransfer(key.account, key.account, 1, 0, 0), key, CHAIN)
    calls = []
    real = crypto.verify_signature

    def counting(*args: object) -> None:
        calls.append(args)
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(crypto, "verify_signature", counting)
    for _ in range(4):  # CheckTx, proposal, ProcessProposal, FinalizeBlock
        crypto.verify_tx(tx, CHAIN)
    assert len(calls) == 1
    # the attacker keeps every byte the cache might look at but the signature ...
    forged_sig = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    with pytest.raises(SignatureError):
        crypto.verify_tx(msgspec.structs.replace(tx, signature=forged_sig), CHAIN)
    # ... or the amount, keeping the valid signature
    with pytest.raises(SignatureError):
        crypto.verify_tx(msgspec.structs.replace(tx, amount=1_000_000), CHAIN)
    # and a valid signature for one chain is not valid for another
    with pytest.raises(SignatureError):
        crypto.verify_tx(tx, CHAIN + "-other")
    assert len(calls) == 4
