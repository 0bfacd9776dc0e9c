"""End to end: the ML service, a node and the gateway as real processes on free loopback ports.

Nothing is mocked: registrations go through the gateway, the node asks the real ML service
over HTTP, blocks land in RocksDB, proofs are checked against the block's tx_root.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from authchain.chain import crypto
from authchain.chain.types import Aid, EvidenceHash, SigScheme, WmProfile
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import Devnet
from authchain.ml_service.artefact import encode_pt_artefact, load_artefact
from authchain.ml_service.outputs import ModelReport
from authchain.ml_service.owner import train_model
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.evidence import parse_evidence
from authchain.ml_service.watermark.sketch import artefact_sketch
from tests.support.devnet import invalid_blocks, make_devnet, node_metrics, seed_body
from tests.support.models import CLEAN_REASON, SEED_PROFILE, ModelCache, TrainedModel

PROFILE = WmProfile(**SEED_PROFILE)


@pytest.fixture(scope="module")
def signer_model(model_cache: ModelCache) -> tuple[crypto.KeyPair, Path]:
    """A tiny model watermarked for a real key's account (so it can sign its registration);
    the directory holding its model.safetensors and evidence.json."""
    key = crypto.KeyPair.from_seed(SigScheme.ML_DSA_65, b"\x33" * 32)

    def make(out: Path) -> ModelReport:
        return train_model(
            bytes(key.account), out, tiny=True, epochs=None, seed=3, watermark=True, base=None,
            spec=EmbedSpec(),
        )  # fmt: skip

    return key, model_cache.get("signer", make, str(key.account)).artefact.parent


def test_watermarked_model_is_committed_with_a_valid_proof(
    gw: GatewayClient, ml: MlServiceClient, watermarked: TrainedModel,
    signer_model: tuple[crypto.KeyPair, Path],
) -> None:  # fmt: skip
    # the seed's unsigned route (devnet impersonation)
    ml.upload_artefact(watermarked.artefact)
    ml.upload_evidence(watermarked.evidence)
    queued = gw.register_unsigned(seed_body(watermarked))
    assert queued["status"] == "queued" and queued["aid"] == watermarked.aid
    status = gw.wait_for_tx(queued["tx_hash"])  # also checks the Merkle proof
    assert status.status == "committed" and status.height is not None and status.proof is not None
    model = httpx.get(f"{gw.http.base_url}/models/{watermarked.aid}").json()
    assert model["owner"] == watermarked.owner and model["registered_at"] == status.height

    # a signed ML-DSA-65 registration through POST /txs
    key, out = signer_model
    aid = ml.upload_artefact(out / "model.safetensors")
    ev = ml.upload_evidence(out / "evidence.json")
    sketch = artefact_sketch(out / "model.safetensors")
    tx_hash = gw.register_signed(
        key, Aid.from_hex(aid), EvidenceHash.from_hex(ev), PROFILE, sketch=sketch
    )
    signed = gw.wait_for_tx(tx_hash)
    assert signed.status == "committed" and signed.tx is not None
    assert signed.tx["sig_scheme"] == "ml-dsa-65"
    block = gw.block(signed.height or 0)
    assert tx_hash in [t["hash"] for t in block["txs"]]


def test_unwatermarked_model_and_forged_claim_are_rejected(
    devnet: Devnet, gw: GatewayClient, ml: MlServiceClient, clean: TrainedModel,
    watermarked: TrainedModel, tmp_path: Path,
) -> None:  # fmt: skip
    ml.upload_artefact(clean.artefact)
    ml.upload_evidence(clean.evidence)
    rejected = gw.wait_for_tx(gw.register_unsigned(seed_body(clean))["tx_hash"])
    assert rejected.status == "rejected"
    assert rejected.reason == CLEAN_REASON

    # the thief: the owner's model re-saved as .pt (new bytes, same function) + the owner's
    # evidence re-targeted to the thief's account
    thief = crypto.KeyPair.generate(SigScheme.ED25519)
    loaded = load_artefact(watermarked.artefact)
    stolen = tmp_path / "stolen.pt"
    stolen.write_bytes(encode_pt_artefact(loaded.model, loaded.arch, loaded.config))
    forged = tmp_path / "forged.json"
    evidence = parse_evidence(watermarked.evidence_bytes)
    forged.write_bytes(evidence.model_copy(update={"owner": thief.account.hex()}).to_bytes())
    aid, ev = ml.upload_artefact(stolen), ml.upload_evidence(forged)
    before = invalid_blocks(devnet)
    tx_hash = gw.register_signed(thief, Aid.from_hex(aid), EvidenceHash.from_hex(ev), PROFILE)
    status = gw.wait_for_tx(tx_hash)
    assert status.status == "rejected" and status.reason is not None
    assert "trigger_acc_below_tau_input" in status.reason
    assert invalid_blocks(devnet) == before  # the proposer dropped it; no block was invalid
    assert httpx.get(f"{gw.http.base_url}/models/{aid}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"aid_hex": "zz" * 32}, "aid_hex"),
        ({"aid_hex": "bb" * 31}, "aid_hex"),
        ({"owner_account_hex": "0x1234"}, "owner_account_hex"),
        ({"evidence_hash_hex": None}, "evidence_hash_hex"),
        ({"wm_profile": {**SEED_PROFILE, "tau_input": 1.5}}, "wm_profile.tau_input"),
        ({"wm_profile": {**SEED_PROFILE, "tau_feat": -1}}, "wm_profile.tau_feat"),
        ({"wm_profile": {**SEED_PROFILE, "logit_band_low": 1.0}}, "wm_profile"),
        ({"wm_profile": {"tau_input": 0.9}}, "wm_profile.tau_feat"),
        ({"scheme_id": "Not A Scheme!"}, "scheme_id"),
        ({"sketch_hex": "ab" * 32}, "sketch_hex"),
        ({"sketch_hex": "zz" * 128}, "sketch_hex"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_malformed_register_bodies_get_4xx_naming_the_field(
    devnet: Devnet, watermarked: TrainedModel, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(
        f"{devnet.gateway_url}/models/register", json=seed_body(watermarked, **body), timeout=10
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_missing_fields_nan_and_oversized_bodies(devnet: Devnet, watermarked: TrainedModel) -> None:
    url = f"{devnet.gateway_url}/models/register"
    body = seed_body(watermarked)
    del body["aid_hex"]
    missing = httpx.post(url, json=body, timeout=10)
    assert missing.status_code == 422 and missing.json()["field"] == "aid_hex"

    nan = json.dumps(seed_body(watermarked)).replace(
        '"logit_band_high": 0.05', '"logit_band_high": NaN'
    )
    response = httpx.post(
        url, content=nan, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 422 and response.json()["field"] == "wm_profile.logit_band_high"

    huge = httpx.post(url, content=b"{" + b" " * 200_000 + b"}", timeout=10)
    assert huge.status_code == 413

    not_json = httpx.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422

    height = httpx.get(f"{devnet.rpc_url}/status").json()["height"]
    deadline = time.monotonic() + 20
    while httpx.get(f"{devnet.rpc_url}/status").json()["height"] <= height:
        assert time.monotonic() < deadline, "the node stopped making blocks"
        time.sleep(0.1)


def test_ml_service_killed_mid_run(
    tmp_path: Path, signer_model: tuple[crypto.KeyPair, Path]
) -> None:
    net = make_devnet(tmp_path / "net")
    net.start()
    try:
        key, out = signer_model
        ml = MlServiceClient(net.ml_url)
        aid, ev = (
            ml.upload_artefact(out / "model.safetensors"),
            ml.upload_evidence(out / "evidence.json"),
        )
        ml.close()
        assert net.stop_process("ml-service", signal.SIGKILL) == -signal.SIGKILL

        gw = GatewayClient(net.gateway_url)
        sketch = artefact_sketch(out / "model.safetensors")
        tx_hash = gw.register_signed(
            key, Aid.from_hex(aid), EvidenceHash.from_hex(ev), PROFILE, sketch=sketch
        )
        height = gw.status()["height"]
        deadline = time.monotonic() + 30
        while gw.status()["height"] < height + 3:  # blocks keep coming without it
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert gw.tx(tx_hash).status == "queued"
        metrics = node_metrics(net)
        assert metrics[("ml_verifier_calls_total", (("result", "unavailable"),))] > 0
        assert invalid_blocks(net) == 0

        net.start_process("ml-service", ["ml-service"], f"{net.ml_url}/health", 60)
        committed = gw.wait_for_tx(tx_hash, timeout=60)
        assert committed.status == "committed" and committed.height is not None
        assert committed.height > height
        assert invalid_blocks(net) == 0
        gw.close()
    finally:
        net.stop()
