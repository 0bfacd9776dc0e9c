"""Constructors validate their fields and name the one that is wrong."""

from __future__ import annotations

import math

import pytest

from authchain.chain.errors import InvalidField
from authchain.chain.types import (
    AccountId,
    Aid,
    EvidenceHash,
    EvidenceRef,
    Hash256,
    Header,
    ModelUseMetadata,
    SigScheme,
    TxRegisterModel,
    TxTransfer,
    WmProfile,
    get_signer,
)

A = b"\xaa" * 32
B = b"\xbb" * 32
PROFILE = WmProfile(0.9, 0.2, -0.05, 0.05)
EVIDENCE = EvidenceRef("multi_factor_v2", EvidenceHash(b"\xcc" * 32), PROFILE)


@pytest.mark.parametrize(
    "text",
    ["ab" * 32, "AB" * 32, "0x" + "ab" * 32, "0X" + "Ab" * 32, "  " + "ab" * 32 + "\n"],
)
def test_hex_input_is_normalised(text: str) -> None:
    aid = Aid.from_hex(text)
    assert aid == b"\xab" * 32
    assert str(aid) == "ab" * 32
    assert isinstance(aid, Aid)


@pytest.mark.parametrize(
    "text", ["ab" * 31, "ab" * 33, "zz" * 32, "0x", "", "ab" * 31 + "a ", "0xx" + "a" * 63]
)
def test_bad_hex_names_the_field(text: str) -> None:
    with pytest.raises(InvalidField) as info:
        Aid.from_hex(text, field="aid")
    assert info.value.field == "aid"
    assert "64 hex characters" in str(info.value)


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_hash_must_be_32_bytes(length: int) -> None:
    with pytest.raises(InvalidField, match="expected 32 bytes"):
        Hash256(b"\x00" * length)


def test_hash_field_given_as_bytes_becomes_the_declared_type() -> None:
    tx = TxRegisterModel(A, B, EVIDENCE, fee=0, nonce=0)  # type: ignore[arg-type]
    assert type(tx.owner) is AccountId
    assert type(tx.aid) is Aid
    assert get_signer(tx) == A


def test_hash_field_of_wrong_length_names_the_field() -> None:
    with pytest.raises(InvalidField) as info:
        TxRegisterModel(A, b"\x01" * 31, EVIDENCE, fee=0, nonce=0)  # type: ignore[arg-type]
    assert info.value.field == "aid"


@pytest.mark.parametrize("field", ["tau_input", "tau_feat"])
@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf])
def test_wm_profile_tau_out_of_range(field: str, value: float) -> None:
    values = {"tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -1.0, "logit_band_high": 1.0}
    values[field] = value
    with pytest.raises(InvalidField) as info:
        WmProfile(**values)
    assert info.value.field == field


@pytest.mark.parametrize("field", ["logit_band_low", "logit_band_high"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_wm_profile_band_must_be_finite(field: str, value: float) -> None:
    values = {"tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -1.0, "logit_band_high": 1.0}
    values[field] = value
    with pytest.raises(InvalidField) as info:
        WmProfile(**values)
    assert info.value.field == field


def test_wm_profile_band_low_above_high() -> None:
    with pytest.raises(InvalidField) as info:
        WmProfile(0.9, 0.2, 0.1, -0.1)
    assert info.value.field == "logit_band_low"


def test_wm_profile_accepts_edges_and_ints() -> None:
    p = WmProfile(1, 0, 0, 0)
    assert p.tau_input == 1.0 and type(p.tau_input) is float


@pytest.mark.parametrize("scheme_id", ["", "Multi", "a" * 65, "with space", "-lead"])
def test_evidence_scheme_id_rules(scheme_id: str) -> None:
    with pytest.raises(InvalidField) as info:
        EvidenceRef(scheme_id, EvidenceHash(B), PROFILE)
    assert info.value.field == "scheme_id"


@pytest.mark.parametrize("field,value", [("fee", -1), ("nonce", 2**64), ("amount", True)])
def test_integers_are_u64(field: str, value: object) -> None:
    values: dict[str, object] = {"sender": A, "recipient": B, "amount": 1, "fee": 0, "nonce": 0}
    values[field] = value
    with pytest.raises(InvalidField) as info:
        TxTransfer(**values)  # type: ignore[arg-type]
    assert info.value.field == field


def test_sig_scheme_from_string_and_unknown() -> None:
    tx = TxTransfer(A, B, 1, 0, 0, sig_scheme="ed25519")  # type: ignore[arg-type]
    assert tx.sig_scheme is SigScheme.ED25519
    with pytest.raises(InvalidField) as info:
        TxTransfer(A, B, 1, 0, 0, sig_scheme="rsa")  # type: ignore[arg-type]
    assert info.value.field == "sig_scheme"


def test_metadata_length_is_bounded() -> None:
    with pytest.raises(InvalidField) as info:
        ModelUseMetadata("x" * 257, "1")
    assert info.value.field == "task"


def test_header_rejects_wrong_parent_and_negative_height() -> None:
    good = {
        "parent": A,
        "height": 1,
        "timestamp": 0,
        "proposer": B,
        "tx_root": A,
        "state_root": B,
    }
    with pytest.raises(InvalidField) as info:
        Header(**{**good, "parent": b"short"})  # type: ignore[arg-type]
    assert info.value.field == "parent"
    with pytest.raises(InvalidField) as info:
        Header(**{**good, "height": -1})  # type: ignore[arg-type]
    assert info.value.field == "height"


def test_records_are_frozen() -> None:
    with pytest.raises(AttributeError):
        PROFILE.tau_input = 0.1  # type: ignore[misc]
