"""A 4-validator CometBFT testnet: real `cometbft` processes on 127.0.0.21-24, each validator
with its own `authchain abci` app, RocksDB and ML service, and a gateway on CometBFT's RPC,
as `authchain testnet` starts them: the apps hold the pending txs (the gateway submits to
their intakes, and they relay to each other), CometBFT's own mempool is off.

The tests run in order on one network: an honest registration (files uploaded to one
validator only, fetched by the others), a forged claim, one validator's ML service down, a
validator crash, a Byzantine proposer that includes an unverified forged claim, a dispute that
overturns a thief's stripped copy on every validator, and the explorer on this network in a
real browser.
"""

from __future__ import annotations

import re
import signal
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from playwright.sync_api import Page, expect

from authchain.chain import crypto
from authchain.chain.schemas import verify_tx_status_proof
from authchain.chain.types import Aid, EvidenceHash, SigScheme, WmProfile
from authchain.client import (
    GatewayClient,
    MlServiceClient,
    ModelFiles,
    file_dispute,
    register_model,
)
from authchain.devnet import free_port
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.owner import evidence_for, train_model
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.sketch import artefact_sketch
from authchain.testnet import Testnet
from tests.support.devnet import REPO, seed_body, shot
from tests.support.models import SEED_PROFILE, SPARED_KEY, TrainedModel

PROFILE = WmProfile(**SEED_PROFILE)
THIEVES = [crypto.KeyPair.from_seed(SigScheme.ED25519, bytes([0xC1 + i]) * 32) for i in range(2)]
OWNER = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\xc5" * 32)


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, watermarked: TrainedModel, stripped: TrainedModel
) -> Iterator[Testnet]:
    """The testnet charges genesis.min_fee: every account that signs here is funded."""
    accounts = [watermarked.owner, stripped.owner, *(str(k.account) for k in THIEVES)]
    accounts += [str(SPARED_KEY.account), str(OWNER.account)]
    testnet = Testnet(
        tmp_path_factory.mktemp("testnet"), first_ip="127.0.0.21", repo=REPO,
        gateway_port=free_port(), gateway_metrics_port=free_port(), unavailable_wait_secs=5.0,
        funded={account: 10**6 for account in accounts},
    )  # fmt: skip
    testnet.start()
    yield testnet
    codes = testnet.stop()
    assert set(codes.values()) == {0}, codes


@pytest.fixture(scope="module")
def gw(net: Testnet) -> Iterator[GatewayClient]:
    client = GatewayClient(net.gateway_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def ml0(net: Testnet) -> Iterator[MlServiceClient]:
    """Validator 0's ML service: the only one files are uploaded to."""
    client = MlServiceClient(net.nodes[0].ml_url)
    yield client
    client.close()


def query_tx(net: Testnet, index: int, tx_hash: str) -> dict[str, Any]:
    status: dict[str, Any] = net.query(index, f"/txs/{tx_hash}")
    return status


def block_headers(net: Testnet, index: int, heights: range) -> list[tuple[str, str]]:
    out = []
    for h in heights:
        found = net.rpc(index, "block", height=str(h))
        out.append((found["block_id"]["hash"], found["block"]["header"]["app_hash"]))
    return out


def assert_same_chain(net: Testnet, nodes: list[int]) -> None:
    """Every validator in `nodes` holds the same blocks and app hashes at every height, and its
    own application's app hash is the one the next block commits to."""
    top = min(net.height(i) for i in nodes)
    heights = range(1, top + 1)
    reference = block_headers(net, nodes[0], heights)
    for i in nodes[1:]:
        assert block_headers(net, i, heights) == reference, f"validator {i} differs"
    for i in nodes:
        app = net.app_status(i)
        net.wait_height(app["height"] + 1, 30, [i])
        following = net.rpc(i, "block", height=str(app["height"] + 1))
        assert following["block"]["header"]["app_hash"].lower() == app["app_hash"]


def train(tmp: Path, key: crypto.KeyPair, seed: int) -> tuple[Aid, EvidenceHash, Path]:
    result = train_model(
        bytes(key.account), tmp, tiny=True, epochs=None, seed=seed, watermark=True, base=None,
        spec=EmbedSpec(),
    )  # fmt: skip
    assert result.passes, result
    return Aid.from_hex(result.aid), EvidenceHash.from_hex(result.evidence_hash), tmp


def stolen(model: TrainedModel, thief: crypto.KeyPair, tmp: Path, nudge: int) -> tuple[Aid, Path]:
    """The owner's model with one weight nudged (a new aid) and the thief's fresh evidence."""
    loaded = load_artefact(model.artefact)
    with torch.no_grad():
        loaded.model.state_dict()["fc.bias"][nudge] += 1e-6
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "model.safetensors"
    path.write_bytes(encode_artefact(loaded.model, loaded.arch, loaded.config))
    made = evidence_for(path, bytes(thief.account), tmp, EmbedSpec())
    assert made.passes is False
    return Aid.from_hex(made.aid), tmp


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_honest_registration_is_committed_by_all_four(
    net: Testnet, gw: GatewayClient, ml0: MlServiceClient, watermarked: TrainedModel
) -> None:
    for node in net.nodes:  # the default: each app holds the pending txs, CometBFT's is off
        comet = tomllib.loads((node.home / "config" / "config.toml").read_text())
        assert comet["mempool"]["type"] == "nop"
    ml0.upload_artefact(watermarked.artefact)  # one upload, to one validator's service
    ml0.upload_evidence(watermarked.evidence)
    status = gw.wait_for_tx(gw.register_unsigned(seed_body(watermarked))["tx_hash"])
    assert status.status == "committed", status
    assert status.proof_hash == "sha256" and verify_tx_status_proof(status)
    # the proof is CometBFT's own: its data_hash for that height
    header = net.rpc(1, "block", height=str(status.height))["block"]["header"]
    assert header["data_hash"].lower() == str(status.tx_root)
    evidence = f"/evidence/{watermarked.evidence_hash}"
    for node in net.nodes:  # every validator verified it: each fetched the files from a peer,
        assert httpx.get(f"{node.ml_url}/artefacts/{watermarked.aid}").status_code == 200
        assert httpx.get(f"{node.ml_url}{evidence}").status_code == 200  # signing for evidence
        model = net.rpc(node.index, "abci_query", path=f"/artefacts/{watermarked.aid}", data="")
        assert model["response"]["code"] == 0
        # and no stranger reads the evidence (the key) from any of them
        refused = httpx.get(f"{node.ml_url}{evidence}/content")
        assert refused.status_code == 401 and refused.json()["reason"] == "peer_auth_required"
    body = httpx.get(f"{gw.http.base_url}/models/{watermarked.aid}").json()
    assert body["owner"] == watermarked.owner
    block = gw.block(status.height or 0)
    assert [t["hash"] for t in block["txs"]] == [str(status.tx_hash)]
    # the registration's state proof, against the app hash the next CometBFT header commits to
    proof = gw.model_proof(Aid.from_hex(watermarked.aid))
    assert proof.record is not None and proof.record["owner"] == str(watermarked.owner)
    net.wait_height(proof.height + 1, 30, [2])
    following = net.rpc(2, "block", height=str(proof.height + 1))["block"]["header"]
    assert proof.verify(bytes.fromhex(following["app_hash"]))
    assert_same_chain(net, [0, 1, 2, 3])


def test_forged_claim_is_never_committed(
    net: Testnet, gw: GatewayClient, ml0: MlServiceClient, watermarked: TrainedModel,
    tmp_path: Path,
) -> None:  # fmt: skip
    thief = THIEVES[0]
    aid, directory = stolen(watermarked, thief, tmp_path, nudge=0)
    ml0.upload_artefact(directory / "model.safetensors")
    ev = EvidenceHash.from_hex(ml0.upload_evidence(directory / "evidence.json"))
    tx_hash = gw.register_signed(thief, aid, ev, PROFILE)
    status = gw.wait_for_tx(tx_hash)
    assert status.status == "rejected", status
    assert "trigger_p_above_floor" in (status.reason or "")
    height = net.height(0)
    net.wait_height(height + 4, 60)  # every validator has proposed since
    for i in range(4):
        assert query_tx(net, i, tx_hash).get("status") != "committed"
    assert httpx.get(f"{gw.http.base_url}/models/{aid}").status_code == 404


def test_one_ml_service_down_the_others_commit_and_nothing_is_invalid(
    net: Testnet, gw: GatewayClient, ml0: MlServiceClient, tmp_path: Path
) -> None:
    owner = OWNER
    aid, ev, directory = train(tmp_path, owner, seed=21)
    ml0.upload_artefact(directory / "model.safetensors")
    ml0.upload_evidence(directory / "evidence.json")
    assert net.stop_ml(1) == 0
    try:
        sketch = artefact_sketch(directory / "model.safetensors")
        tx_hash = gw.register_signed(owner, aid, ev, PROFILE, sketch=sketch)
        status = gw.wait_for_tx(tx_hash)
        assert status.status == "committed", status  # validators 0, 2 and 3 verified it
        top = net.height(0)
        net.wait_height(top + 2, 60, [0, 2, 3])  # ... and keep committing
        assert net.height(1) <= (status.height or 0)  # validator 1 waits for its verifier
        assert query_tx(net, 1, tx_hash)["status"] != "rejected"
    finally:
        net.start_ml(1)
    net.wait_height(net.height(0), 90, [1])  # it catches up once its verifier is back
    assert query_tx(net, 1, tx_hash)["status"] == "committed"
    abci_log = (net.nodes[1].root / "logs" / "abci.log").read_text()
    # it waited (in ProcessProposal, in FinalizeBlock, or both, as the timing fell); it judged
    # nothing: the tx committed on it too, and no rejection was recorded
    assert "V_auth unavailable, waiting" in abci_log or "decided but V_auth" in abci_log
    assert_same_chain(net, [0, 1, 2, 3])


def test_validator_crash_the_others_go_on_and_it_catches_up(net: Testnet) -> None:
    killed = net.stop_validator(3, signal.SIGKILL)
    assert set(killed.values()) == {-signal.SIGKILL}
    top = net.height(0)
    net.wait_height(top + 3, 60, [0, 1, 2])
    net.start_validator(3)
    net.wait_height(net.height(0), 90, [3])
    assert_same_chain(net, [0, 1, 2, 3])


def test_byzantine_proposer_forged_claim_is_rejected_and_the_chain_goes_on(
    net: Testnet, gw: GatewayClient, ml0: MlServiceClient, watermarked: TrainedModel,
    tmp_path: Path,
) -> None:  # fmt: skip
    net.stop_validator(3)
    net.start_validator(3, include_unverified_claims=True)
    assert net.app_status(3)["misbehaving"] is True
    rejected_before = sum(net.app_status(i)["proposals_rejected"] for i in range(3))
    thief = THIEVES[1]
    aid, directory = stolen(watermarked, thief, tmp_path, nudge=1)
    ml0.upload_artefact(directory / "model.safetensors")
    ev = EvidenceHash.from_hex(ml0.upload_evidence(directory / "evidence.json"))
    tx_hash = gw.register_signed(thief, aid, ev, PROFILE)
    wait_until(
        lambda: net.app_status(3).get("unverified_claims_proposed", 0) >= 1,
        90, "the Byzantine validator to propose the forged claim",
    )  # fmt: skip
    wait_until(
        lambda: sum(net.app_status(i)["proposals_rejected"] for i in range(3)) > rejected_before,
        60, "the honest validators to reject its proposal",
    )  # fmt: skip
    top = net.height(0)
    net.wait_height(top + 3, 90, [0, 1, 2])  # the chain goes on without the claim
    for i in range(4):
        assert query_tx(net, i, tx_hash).get("status") != "committed"
    assert httpx.get(f"{gw.http.base_url}/models/{aid}").status_code == 404
    net.stop_validator(3)
    net.start_validator(3)
    assert_same_chain(net, [0, 1, 2, 3])


def test_a_stripped_copy_is_overturned_on_every_validator_with_one_app_hash(
    net: Testnet, gw: GatewayClient, ml0: MlServiceClient, spared: TrainedModel,
    stripped: TrainedModel,
) -> None:  # fmt: skip
    """The owner registers with committed spares; the thief's copy, primary stripped,
    commits; the owner's dispute, its spare revealed to validator 1's service only (the
    others fetch it with signed requests), overturns it in every validator's state."""
    files = ModelFiles.in_dir(spared.artefact.parent)
    profile = WmProfile(**SEED_PROFILE)
    owner = register_model(gw, SPARED_KEY, profile, files=files, upload_to=ml0)
    assert owner.status is not None and owner.status.status == "committed", owner.status
    ml0.upload_artefact(stripped.artefact)
    ml0.upload_evidence(stripped.evidence)
    copy = gw.wait_for_tx(gw.register_unsigned(seed_body(stripped))["tx_hash"])
    assert copy.status == "committed", copy
    ml1 = MlServiceClient(net.nodes[1].ml_url)
    done = file_dispute(gw, SPARED_KEY, files, Aid.from_hex(stripped.aid), upload_to=ml1)
    ml1.close()
    assert done.verdict is not None and done.verdict.upheld, done
    spare = spared.result.spares[done.spare_index].evidence_hash
    for node in net.nodes:
        record = net.query(node.index, f"/artefacts/{stripped.aid}")
        assert record["status"] == "overturned", (node.index, record)
        assert record["overturned_by"]["earlier_aid"] == spared.aid
        refused = httpx.get(f"{node.ml_url}/evidence/{spare}/content")  # revealed to validators
        assert refused.status_code == 401  # and to no one else
    assert gw.model(Aid.from_hex(spared.aid)).spent_spares == [done.spare_index]
    assert_same_chain(net, [0, 1, 2, 3])


def test_the_explorer_shows_the_testnet(
    net: Testnet, gw: GatewayClient, watermarked: TrainedModel, spared: TrainedModel,
    stripped: TrainedModel, open_page: Callable[[str], Page], tmp_path: Path,
) -> None:  # fmt: skip
    """The same explorer on CometBFT: its validator set with voting power, its blocks, and a
    registration's inclusion proof checked in the browser against CometBFT's data_hash
    (SHA-256)."""
    page = open_page(net.gateway_url)
    page.goto("/")
    height = page.locator("#height")
    first = int(height.inner_text())
    expect(height).not_to_have_text(str(first), timeout=30_000)
    shot(page, tmp_path, "testnet-overview")
    page.goto("/validator-set")
    rows = page.locator("#validators tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("ed25519")
    shot(page, tmp_path, "testnet-validators")
    committed = gw.http.get("/claims", params={"aid": watermarked.aid}).json()["claims"]
    [claim] = [c for c in committed if c["status"] == "committed"]
    page.goto(f"/tx/{claim['tx_hash']}")
    result = page.locator("#proof-result")
    expect(result).to_have_class("ok", timeout=10_000)
    expect(result).to_contain_text("SHA-256")
    shot(page, tmp_path, "testnet-tx-proof")
    page.locator(f"a[href='/model/{watermarked.aid}']").first.click()
    expect(page.locator("#trigger-p")).to_have_text(re.compile(r"^2\^-\d+"))
    expect(page.locator("#model-summary")).to_contain_text(watermarked.owner)
    shot(page, tmp_path, "testnet-model")
    page.goto(f"/model/{stripped.aid}")  # overturned by the owner's dispute (test above)
    expect(page.locator("#model-status")).to_contain_text("overturned")
    expect(page.locator("#overturned")).to_contain_text("spare watermark")
    disputes = page.locator("#disputes")  # with the statistics that proved it
    expect(disputes).to_contain_text("upheld")
    expect(disputes).to_contain_text(re.compile(r"both together p = 2\^-\d+"))
    expect(disputes).to_contain_text(re.compile(r"triggers p = 2\^-\d+"))
    shot(page, tmp_path, "testnet-overturned-model")
    page.goto(f"/model/{spared.aid}")  # and the owner's page lists the copy it overturned
    expect(page.locator("#model-overturned")).to_contain_text(stripped.aid[:8])
    expect(page.locator("#disputes")).to_contain_text(re.compile(r"both together p = 2\^-\d+"))
    expect(page.locator("#model-spares")).to_contain_text("1 spent")
