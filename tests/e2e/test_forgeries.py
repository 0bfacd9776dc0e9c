"""The attacker's view: forged ownership claims made with the project's own tools, through a
real gateway, node and ML service. Every one must fail with its reason; honest claims, an
owner's own fine-tune and a registration whose files arrive late must commit.

The four forgeries are the ones issue 9 found committed before the chain enforced floors:
1. a permissive profile (tau_input 0, tau_feat 1) on an unwatermarked model;
2. a stolen model (one weight nudged: a new aid) with the thief's fresh, honest evidence;
3. grindable evidence (1 trigger, 1 bit), ground until a clean model passes;
4. a watermark overwrite: the stolen model fine-tuned with the thief's own watermark.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import blake3
import httpx
import pytest
import torch

from authchain.chain import crypto
from authchain.chain.types import Aid, EvidenceHash, SigScheme, WmProfile
from authchain.client import ClientError, GatewayClient, MlServiceClient, read_strength
from authchain.devnet import Devnet
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.owner import evidence_for, train_model, verify_local
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.sketch import artefact_sketch
from authchain.ml_service.watermark.verify import Thresholds
from tests.support.devnet import invalid_blocks, seed_body
from tests.support.models import SEED_PROFILE, TrainedModel

PROFILE = WmProfile(**SEED_PROFILE)


def upload(
    ml: MlServiceClient, directory: Path, artefact: str = "model.safetensors"
) -> tuple[Aid, EvidenceHash]:
    return (
        Aid.from_hex(ml.upload_artefact(directory / artefact)),
        EvidenceHash.from_hex(ml.upload_evidence(directory / "evidence.json")),
    )


def model(gw: GatewayClient, aid: object) -> httpx.Response:
    return httpx.get(f"{gw.http.base_url}/models/{aid}", timeout=10)


def test_honest_registration_commits(gw: GatewayClient, owner_registered: TrainedModel) -> None:
    body = model(gw, owner_registered.aid).json()
    assert body["owner"] == owner_registered.owner and body["parents"] == []
    assert (body["trigger_count"], body["signature_bits"], body["num_classes"]) == (100, 2048, 10)


def test_forgery_1_permissive_profile_is_refused_at_checktx(
    gw: GatewayClient, ml: MlServiceClient, clean: TrainedModel, thief: crypto.KeyPair,
    tmp_path: Path,
) -> None:  # fmt: skip
    made = evidence_for(clean.artefact, bytes(thief.account), tmp_path, EmbedSpec())
    assert made.passes is False and made.wm_profile is None  # honest tooling says so
    aid, ev = upload(ml, tmp_path)
    with pytest.raises(ClientError) as info:
        gw.register_signed(thief, aid, ev, WmProfile(0.0, 1.0, -0.05, 0.05))
    assert info.value.status == 400 and info.value.reason == "claim_below_floor"
    assert "evidence.wm_profile.tau_input" in info.value.detail
    # the seed's unsigned route names the seed body's field
    response = httpx.post(
        f"{gw.http.base_url}/models/register",
        json=seed_body(clean, wm_profile={**SEED_PROFILE, "tau_input": 0.0, "tau_feat": 1.0}),
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "claim_below_floor"
    assert response.json()["field"] == "wm_profile.tau_input"
    assert model(gw, aid).status_code == 404


def test_forgery_2_stolen_model_with_fresh_evidence_is_rejected(
    devnet: Devnet, gw: GatewayClient, ml: MlServiceClient, owner_registered: TrainedModel,
    thief: crypto.KeyPair, tmp_path: Path,
) -> None:  # fmt: skip
    loaded = load_artefact(owner_registered.artefact)
    with torch.no_grad():
        loaded.model.state_dict()["fc.bias"][0] += 1e-6  # one weight nudged: a new aid
    stolen = tmp_path / "stolen.safetensors"
    stolen.write_bytes(encode_artefact(loaded.model, loaded.arch, loaded.config))
    made = evidence_for(stolen, bytes(thief.account), tmp_path / "ev", EmbedSpec())
    assert made.passes is False and made.wm_profile is None
    aid, ev = upload(ml, tmp_path / "ev")
    assert str(aid) != owner_registered.aid
    # what the old `model evidence` recommended: refused before any block
    with pytest.raises(ClientError) as info:
        gw.register_signed(thief, aid, ev, WmProfile(0.0, 0.7, -0.05, 0.05))
    assert info.value.reason == "claim_below_floor"
    # a profile at the floors: V_auth rejects it
    before = invalid_blocks(devnet)
    status = gw.wait_for_tx(gw.register_signed(thief, aid, ev, PROFILE))
    assert status.status == "rejected" and status.reason is not None
    assert "trigger_p_above_floor" in status.reason and "feat_p_above_floor" in status.reason
    assert invalid_blocks(devnet) == before
    assert model(gw, aid).status_code == 404


def test_forgery_3_grindable_evidence_is_refused(
    gw: GatewayClient, ml: MlServiceClient, clean: TrainedModel, thief: crypto.KeyPair,
    tmp_path: Path,
) -> None:  # fmt: skip
    weak = EmbedSpec(trigger_count=1, signature_bits=1)
    seed_profile = Thresholds(0.9, 0.2, -0.05, 0.05)
    for attempt in range(400):  # grind key seeds until the clean model "passes" the seed profile
        out = tmp_path / f"try{attempt}"
        evidence_for(
            clean.artefact, bytes(thief.account), out, weak, key_seed=secrets.token_bytes(32)
        )
        verdict = verify_local(clean.artefact, out / "evidence.json", None, seed_profile)
        assert verdict.stats is not None
        if verdict.stats.trigger_acc >= 0.9 and verdict.stats.feat_dist <= 0.2:
            break
    else:
        pytest.fail("grinding never passed the seed profile")  # ~1 in 20 tries should
    assert verdict.reason == "trigger_p_above_floor;feat_p_above_floor"  # the floors hold
    aid, ev = upload(ml, out)
    strength = read_strength(out / "evidence.json")
    assert strength["trigger_count"] == 1
    with pytest.raises(ClientError) as info:  # stating the real strength: CheckTx refuses
        gw.register_signed(thief, aid, ev, PROFILE, strength=strength)
    assert info.value.reason == "claim_below_floor"
    assert "evidence.trigger_count" in info.value.detail
    # lying about the strength: V_auth reads the evidence and rejects the claim
    status = gw.wait_for_tx(gw.register_signed(thief, aid, ev, PROFILE))
    assert status.status == "rejected" and status.reason == "evidence_claim_mismatch"
    assert model(gw, aid).status_code == 404


def test_forgery_4_watermark_overwrite_is_rejected_naming_the_original(
    gw: GatewayClient, ml: MlServiceClient, owner_registered: TrainedModel,
    thief: crypto.KeyPair, tmp_path: Path,
) -> None:  # fmt: skip
    result = train_model(
        bytes(thief.account), tmp_path, tiny=True, epochs=5, seed=5, watermark=True,
        base=owner_registered.artefact, spec=EmbedSpec(),
    )  # fmt: skip
    assert result.passes, result  # the thief's own watermark meets every floor ...
    aid, ev = upload(ml, tmp_path)
    profile = WmProfile(**result.to_json()["wm_profile"])
    sketch = artefact_sketch(tmp_path / "model.safetensors")
    status = gw.wait_for_tx(gw.register_signed(thief, aid, ev, profile, sketch=sketch))
    assert status.status == "rejected"  # ... but the original owner's is still in there
    assert status.reason == "carries_registered_watermark"
    assert status.detail is not None and owner_registered.aid in status.detail
    assert model(gw, aid).status_code == 404


def test_owners_own_fine_tune_commits_with_its_lineage(
    gw: GatewayClient, ml: MlServiceClient, owner_registered: TrainedModel,
    own_finetune: TrainedModel,
) -> None:  # fmt: skip
    ml.upload_artefact(own_finetune.artefact)
    ml.upload_evidence(own_finetune.evidence)
    status = gw.wait_for_tx(gw.register_unsigned(seed_body(own_finetune))["tx_hash"])
    assert status.status == "committed", status
    body = model(gw, own_finetune.aid).json()
    assert body["owner"] == owner_registered.owner
    assert body["parents"] == [owner_registered.aid]


def test_files_uploaded_after_the_registration_still_commit(
    gw: GatewayClient, ml: MlServiceClient, tmp_path: Path
) -> None:
    key = crypto.KeyPair.generate(SigScheme.ED25519)
    train_model(
        bytes(key.account), tmp_path, tiny=True, epochs=None, seed=11, watermark=True,
        base=None, spec=EmbedSpec(),
    )  # fmt: skip
    artefact, evidence = tmp_path / "model.safetensors", tmp_path / "evidence.json"
    aid = Aid.from_hex(blake3.blake3(artefact.read_bytes()).hexdigest())
    ev = EvidenceHash.from_hex(blake3.blake3(evidence.read_bytes()).hexdigest())
    sketch = artefact_sketch(artefact)  # computed here: the service has no file yet
    tx_hash = gw.register_signed(key, aid, ev, PROFILE, sketch=sketch)  # nothing uploaded yet
    height = gw.status()["height"]
    deadline = time.monotonic() + 30
    while gw.status()["height"] < height + 4:  # blocks go by: the registration waits
        assert gw.tx(tx_hash).status == "queued"
        assert time.monotonic() < deadline, "the node stopped making blocks"
        time.sleep(0.1)
    assert gw.tx(tx_hash).status == "queued"
    ml.upload_artefact(artefact)
    ml.upload_evidence(evidence)
    status = gw.wait_for_tx(tx_hash)
    assert status.status == "committed" and status.height is not None
    assert status.height > height + 3
