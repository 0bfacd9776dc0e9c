"""Bring your own model, end to end: timm models of three families (a ResNet, an EfficientNet,
a ViT, in timm's tiny test configs) trained with the watermark hook, uploaded, registered with
signed txs and committed by a real node and ML service; a model off the network's allow-list
is refused with that reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from authchain.chain.types import Aid, EvidenceHash, WmProfile
from authchain.client import ClientError, GatewayClient, MlServiceClient, read_strength
from authchain.devnet import Devnet, DevnetPorts
from authchain.ml_service.outputs import ModelReport
from tests.support.devnet import FUNDED, REPO
from tests.support.models import ModelCache, train_timm_test_model

ALLOWED = ["test_resnet", "test_efficientnet", "test_vit"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    devnet = Devnet(
        tmp_path_factory.mktemp("timm-devnet"), ports=DevnetPorts.free(), block_time_secs=0.5,
        ml_timeout_secs=30, repo=REPO,
        extra_env={"ML_SERVICE_TIMM_MODELS": json.dumps(ALLOWED)},
    )  # fmt: skip
    devnet.start()
    yield devnet
    assert devnet.stop() == {"gateway": 0, "node": 0, "ml-service": 0}


def declared_sketch(ml: MlServiceClient, aid: str) -> bytes:
    """The sketch as the network's ML service computes it (its allow-list has the test models;
    this process's does not); none for a model it refuses to load, which V_auth then refuses
    for that reason first."""
    try:
        return ml.sketch(Aid.from_hex(aid))
    except ClientError:
        return b""


def register(net: Devnet, out: Path, profile: WmProfile) -> str:
    gw, ml = GatewayClient(net.gateway_url), MlServiceClient(net.ml_url)
    try:
        aid = ml.upload_artefact(out / "model.safetensors")
        evidence = ml.upload_evidence(out / "evidence.json")
        tx_hash = gw.register_signed(
            FUNDED, Aid.from_hex(aid), EvidenceHash.from_hex(evidence), profile,
            strength=read_strength(out / "evidence.json"),
            sketch=declared_sketch(ml, aid),
        )  # fmt: skip
        status = gw.wait_for_tx(tx_hash, timeout=120)
        if status.status != "committed":
            return f"rejected:{status.reason}"
        record = gw.model_proof(Aid.from_hex(aid)).record
        assert record is not None and record["owner"] == str(FUNDED.account)
        return "committed"
    finally:
        gw.close()
        ml.close()


def trained(models: ModelCache, name: str) -> ModelReport:
    """`name` trained with the hook for FUNDED's account (made once, then from the cache)."""
    return train_timm_test_model(models, name, bytes(FUNDED.account)).result


@pytest.mark.parametrize("name", ALLOWED)
def test_a_timm_model_trained_with_the_hook_is_committed(
    net: Devnet, name: str, model_cache: ModelCache
) -> None:
    result = trained(model_cache, name)
    assert result.passes, result.stats
    profile = WmProfile(**result.to_json()["wm_profile"])
    assert register(net, result.artefact.parent, profile) == "committed"


def test_a_model_off_the_allow_list_is_refused_with_that_reason(
    net: Devnet, model_cache: ModelCache
) -> None:
    result = trained(model_cache, "test_convnext")
    outcome = register(net, result.artefact.parent, WmProfile(0.9, 0.2, -0.05, 0.05))
    assert outcome == "rejected:architecture_not_allowed", (outcome, result.stats)
