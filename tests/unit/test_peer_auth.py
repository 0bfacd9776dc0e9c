"""Peer request signatures (`ml_service/peer_auth.py`), without servers: what a signature
binds, the key files a validator has, and the settings that turn it on."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from authchain.chain.crypto import KeyPair, write_key_file
from authchain.chain.types import SigScheme
from authchain.ml_service.config import MlServiceSettings
from authchain.ml_service.peer_auth import (
    PeerAuthenticator,
    PeerAuthError,
    PeerKey,
    PeerKeyError,
    RequestSigner,
    read_peer_key,
)

KEY = PeerKey.from_seed("ed25519", b"\x07" * 32)
PATH = "/evidence/" + "ab" * 32 + "/content"
NOW = 1_800_000_000.0


def authenticator(*keys: PeerKey) -> PeerAuthenticator:
    return PeerAuthenticator("chain-a", [(k.scheme, k.public_key) for k in keys or (KEY,)])


def test_a_signature_binds_chain_method_path_and_time() -> None:
    headers = RequestSigner(KEY, "chain-a").headers("GET", PATH, now=NOW)
    assert authenticator().check("GET", PATH, headers, now=NOW + 59) == KEY.header
    for method, path, now in [("PUT", PATH, NOW), ("GET", PATH + "x", NOW)]:
        with pytest.raises(PeerAuthError, match="peer_signature_invalid"):
            authenticator().check(method, path, headers, now=now)
    with pytest.raises(PeerAuthError, match="peer_auth_stale"):
        authenticator().check("GET", PATH, headers, now=NOW + 61)
    other_chain = PeerAuthenticator("chain-b", [(KEY.scheme, KEY.public_key)])
    with pytest.raises(PeerAuthError, match="peer_signature_invalid"):
        other_chain.check("GET", PATH, headers, now=NOW)


def test_a_key_outside_the_set_is_refused_before_any_signature_check() -> None:
    stranger = PeerKey.from_seed("ed25519", b"\x08" * 32)
    headers = RequestSigner(stranger, "chain-a").headers("GET", PATH, now=NOW)
    headers["x-authchain-peer-signature"] = "not hex at all"  # never parsed
    with pytest.raises(PeerAuthError, match="peer_not_validator"):
        authenticator().check("GET", PATH, headers, now=NOW)


def test_an_empty_validator_set_serves_nobody() -> None:
    headers = RequestSigner(KEY, "chain-a").headers("GET", PATH, now=NOW)
    with pytest.raises(PeerAuthError, match="evidence_private"):
        PeerAuthenticator("chain-a", []).check("GET", PATH, headers, now=NOW)


def test_both_key_files_a_validator_has_are_read(tmp_path: Path) -> None:
    comet = tmp_path / "priv_validator_key.json"
    value = base64.b64encode(KEY.seed + KEY.public_key).decode()
    comet.write_text(
        json.dumps({"priv_key": {"type": "tendermint/PrivKeyEd25519", "value": value}})
    )
    assert read_peer_key(comet) == KEY
    pair = KeyPair.generate(SigScheme.ML_DSA_65)
    write_key_file(tmp_path / "validator.key", pair)
    ours = read_peer_key(tmp_path / "validator.key")
    assert (ours.scheme, ours.public_key) == ("ml-dsa-65", pair.public_key)
    (tmp_path / "bad.json").write_text('{"priv_key": {"type": "tendermint/PrivKeySecp256k1"}}')
    with pytest.raises(PeerKeyError, match=r"bad\.json"):
        read_peer_key(tmp_path / "bad.json")


def test_the_settings_need_a_chain_id_and_well_formed_keys(tmp_path: Path) -> None:
    roots: dict[str, Any] = {"model_root": tmp_path / "m", "evidence_root": tmp_path / "e"}
    with pytest.raises(ValidationError, match="chain_id"):
        MlServiceSettings(**roots, peer_auth={"validators": [{"public_key": "00" * 32}]})
    with pytest.raises(ValidationError, match="public_key"):
        MlServiceSettings(
            **roots, peer_auth={"chain_id": "c", "validators": [{"public_key": "00" * 31}]}
        )
