"""Data availability and who may read evidence, between real ML services on loopback.

A validator's ML service fetches the files it lacks from its peers by hash and keeps only bytes
whose BLAKE3 is the id it asked for. Evidence holds the watermark key, so a peer serves it only
to a request signed by a validator key of the same chain (`ml_service/peer_auth.py`); a
stranger, a key outside the validator set, another chain's signature, an old or replayed
request each get 401 naming why. Artefacts stay public."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest

from authchain.ml_service.config import MlServiceSettings
from authchain.ml_service.main import create_app
from authchain.ml_service.peer_auth import PeerKey, RequestSigner
from authchain.ml_service.peers import PeerFetcher
from authchain.ml_service.registry import FilesystemStore
from tests.support.servers import serve_app

ARTEFACT = b"\x00" * 64 + b"the owner's model"
AID = blake3.blake3(ARTEFACT).hexdigest()
EVIDENCE = b'{"evidence": true, "key_seed": "the secret"}'
EVIDENCE_HASH = blake3.blake3(EVIDENCE).hexdigest()
CHAIN = "peers-test"

HOLDER = PeerKey.from_seed("ed25519", b"\x01" * 32)
FETCHER = PeerKey.from_seed("ml-dsa-65", b"\x02" * 32)
STRANGER = PeerKey.from_seed("ed25519", b"\x03" * 32)
VALIDATORS = [HOLDER, FETCHER]


def comet_key_file(path: Path, key: PeerKey) -> Path:
    """CometBFT's priv_validator_key.json for an Ed25519 key (what a testnet validator has)."""
    value = base64.b64encode(key.seed + key.public_key).decode()
    path.write_text(json.dumps({"priv_key": {"type": "tendermint/PrivKeyEd25519", "value": value}}))
    return path


def settings(root: Path, *, validators: list[PeerKey], **more: Any) -> MlServiceSettings:
    auth = {
        "chain_id": CHAIN,
        "validators": [{"scheme": k.scheme, "public_key": k.public_key.hex()} for k in validators],
    }
    return MlServiceSettings(
        model_root=root / "models", evidence_root=root / "evidence",
        peer_auth={**auth, **more.pop("peer_auth", {})}, **more,
    )  # fmt: skip


@asynccontextmanager
async def service(settings: MlServiceSettings) -> AsyncIterator[str]:
    async with serve_app(create_app(settings)) as url:
        yield url


async def holding_the_files(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.put(f"/artefacts/{AID}", content=ARTEFACT)).status_code == 201
        assert (await client.put(f"/evidence/{EVIDENCE_HASH}", content=EVIDENCE)).status_code == 201


def fetcher(root: Path, peers: list[str], signer: RequestSigner | None) -> PeerFetcher:
    store = FilesystemStore(root / "models", root / "evidence")
    return PeerFetcher(
        store, peers, max_artefact_bytes=1 << 20, max_evidence_bytes=1 << 20, signer=signer
    )


async def test_a_validator_fetches_both_files_and_a_lying_peer_is_skipped(tmp_path: Path) -> None:
    liar_root = tmp_path / "liar"
    async with (
        service(settings(liar_root, validators=VALIDATORS)) as liar,
        service(settings(tmp_path / "holder", validators=VALIDATORS)) as holder,
    ):
        await holding_the_files(holder)
        # the liar's disk holds other bytes under the same ids: it serves them as they are
        (liar_root / "models" / f"{AID}.pt").write_bytes(b"\x00" * 64 + b"a different model")
        (liar_root / "evidence" / f"{EVIDENCE_HASH}.json").write_bytes(b'{"evidence": false}')
        fetch = fetcher(tmp_path / "fetcher", [liar, holder], RequestSigner(FETCHER, CHAIN))
        await fetch.ensure(AID, [EVIDENCE_HASH])
        await fetch.aclose()
    artefact, evidence = fetch.store.find_artefact(AID), fetch.store.find_evidence(EVIDENCE_HASH)
    assert artefact is not None and artefact.read_bytes() == ARTEFACT
    assert evidence is not None and evidence.read_bytes() == EVIDENCE
    assert fetch.fetched == 2


async def test_a_testnet_validator_signs_with_its_cometbft_key(tmp_path: Path) -> None:
    """The service signs its fetches itself (`peer_auth.key_file`, CometBFT's format), and
    a claim's missing evidence arrives through `/verify`'s fetch."""
    key_file = comet_key_file(tmp_path / "priv_validator_key.json", HOLDER)
    async with service(settings(tmp_path / "a", validators=VALIDATORS)) as holder:
        await holding_the_files(holder)
        other = settings(
            tmp_path / "b", validators=VALIDATORS, peers=[holder],
            peer_auth={"key_file": key_file},
        )  # fmt: skip
        app = create_app(other)
        peers: PeerFetcher = app.state.service.peers
        assert peers.signer is not None and peers.signer.key == HOLDER
        await peers.ensure(AID, [EVIDENCE_HASH])
        await peers.aclose()
    assert peers.fetched == 2


async def test_without_a_key_a_validator_gets_the_artefact_but_not_the_evidence(
    tmp_path: Path,
) -> None:
    async with service(settings(tmp_path / "holder", validators=VALIDATORS)) as holder:
        await holding_the_files(holder)
        fetch = fetcher(tmp_path / "fetcher", [holder], signer=None)
        await fetch.ensure(AID, [EVIDENCE_HASH])
        await fetch.aclose()
    assert fetch.store.find_artefact(AID) is not None
    assert fetch.store.find_evidence(EVIDENCE_HASH) is None  # unavailable, never invalid


def signed(key: PeerKey, path: str = "", *, chain: str = CHAIN, ago: float = 0) -> dict[str, str]:
    return RequestSigner(key, chain).headers("GET", path or PATH, now=time.time() - ago)


PATH = f"/evidence/{EVIDENCE_HASH}/content"
OTHER_PATH = f"/evidence/{'0' * 64}/content"
Headers = Callable[[], dict[str, str]]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (dict, "peer_auth_required"),
        (lambda: signed(STRANGER), "peer_not_validator"),
        (lambda: signed(FETCHER, chain="another-chain"), "peer_signature_invalid"),
        (lambda: signed(FETCHER, OTHER_PATH), "peer_signature_invalid"),  # another file's
        (lambda: signed(FETCHER, ago=3600), "peer_auth_stale"),
        (lambda: {**signed(FETCHER), "x-authchain-peer-time": "soon"}, "peer_auth_malformed"),
    ],
    ids=["stranger", "not_a_validator", "other_chain", "other_file", "stale", "malformed"],
)
async def test_evidence_is_refused_to_anyone_but_a_validator(
    tmp_path: Path, headers: Headers, reason: str
) -> None:
    async with (
        service(settings(tmp_path, validators=VALIDATORS)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        await holding_the_files(url)
        refused = await client.get(PATH, headers=headers())
        assert refused.status_code == 401, refused.text
        assert refused.json()["reason"] == reason and refused.json()["detail"]
        assert b"the secret" not in refused.content
        assert (await client.get(PATH, headers=signed(FETCHER))).content == EVIDENCE
        # the artefact, and whether the evidence is stored, stay public
        assert (await client.get(f"/artefacts/{AID}/content")).content == ARTEFACT
        assert (await client.get(f"/evidence/{EVIDENCE_HASH}")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert f'ml_evidence_reads_total{{result="{reason}"}} 1.0' in metrics
    assert 'ml_evidence_reads_total{result="served"} 1.0' in metrics


async def test_a_service_without_a_validator_set_serves_evidence_to_nobody(tmp_path: Path) -> None:
    bare = MlServiceSettings(model_root=tmp_path / "models", evidence_root=tmp_path / "evidence")
    async with service(bare) as url, httpx.AsyncClient(base_url=url) as client:
        await holding_the_files(url)
        refused = await client.get(PATH, headers=signed(FETCHER))
    assert refused.status_code == 401 and refused.json()["reason"] == "evidence_private"
