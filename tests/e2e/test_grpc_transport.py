"""ABCI over gRPC (`authchain testnet --abci-transport grpc`): two real `cometbft` processes on
127.0.0.71-72 reach their `authchain abci` apps through CometBFT's gRPC client instead of the
socket. Every ABCI call crosses the other transport: CheckTx's refusals keep their reasons, a
registration goes through V_auth in PrepareProposal, ProcessProposal and FinalizeBlock on both
validators, a forged claim is refused, and a killed validator's handshake (Info) replays what
it missed. The socket stays the default; README, "ABCI transports", says why."""

from __future__ import annotations

import json
import signal
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from authchain import loadgen
from authchain.chain import codec, crypto
from authchain.chain.schemas import verify_tx_status_proof
from authchain.chain.types import EvidenceHash, SigScheme, TxTransfer
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import free_port
from authchain.testnet import MIN_FEE, Testnet
from tests.e2e.test_cometbft import PROFILE, assert_same_chain, stolen
from tests.support.devnet import REPO, seed_body
from tests.support.models import TrainedModel

PAYER = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x91" * 32)
THIEF = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x92" * 32)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, watermarked: TrainedModel) -> Iterator[Testnet]:
    funded = {account: 10**6 for account in (watermarked.owner, str(PAYER.account))}
    funded[str(THIEF.account)] = 10**6
    testnet = Testnet(
        tmp_path_factory.mktemp("grpc"), validators=2, first_ip="127.0.0.71", repo=REPO,
        gateway_port=free_port(), gateway_metrics_port=free_port(), funded=funded,
        abci_transport="grpc", mempool="cometbft",  # every CheckTx crosses gRPC too
    )  # fmt: skip
    testnet.start()
    yield testnet
    codes = testnet.stop()
    assert set(codes.values()) == {0}, codes  # the gRPC server stops cleanly on SIGTERM


@pytest.fixture(scope="module")
def gw(net: Testnet) -> Iterator[GatewayClient]:
    client = GatewayClient(net.gateway_url)
    yield client
    client.close()


def test_the_network_really_runs_on_grpc(net: Testnet) -> None:
    for node in net.nodes:
        comet = tomllib.loads((node.home / "config" / "config.toml").read_text())
        assert comet["abci"] == "grpc" and comet["proxy_app"] == f"{node.host}:26658"
        log = (node.root / "logs" / "abci.log").read_text()
        assert "ABCI gRPC server listening" in log
        assert "ABCI server listening" not in log  # the socket server never started


def test_checktx_refusals_keep_their_reasons_and_a_transfer_commits(
    net: Testnet, gw: GatewayClient
) -> None:
    def signed(fee: int, nonce: int) -> bytes:
        tx = TxTransfer(PAYER.account, THIEF.account, 1, fee, nonce)
        return codec.encode(crypto.sign_tx(tx, PAYER, net.chain_id))

    url = net.nodes[0].rpc_url  # the gateway reads through validator 0
    transfer = signed(MIN_FEE, 0)
    cheap, gapped, good = (
        loadgen.replay([url], [raw], repo=REPO, concurrency=1).results[0]
        for raw in (signed(0, 0), signed(MIN_FEE, 3), transfer)
    )
    assert cheap.code == 1 and json.loads(cheap.log)["reason"] == "fee_too_low"
    assert gapped.code == 1 and json.loads(gapped.log)["reason"] == "nonce_gap"
    assert good.accepted
    tx_hash = codec.compute_tx_hash(codec.decode(transfer, TxTransfer))
    status = gw.wait_for_tx(str(tx_hash))
    assert status.status == "committed" and verify_tx_status_proof(status), status
    assert gw.account(PAYER.account)["next_nonce"] == 1  # Query, over gRPC too


def test_a_registration_commits_and_a_forged_claim_does_not(
    net: Testnet, gw: GatewayClient, watermarked: TrainedModel, tmp_path: Path
) -> None:
    ml0 = MlServiceClient(net.nodes[0].ml_url)
    ml0.upload_artefact(watermarked.artefact)
    ml0.upload_evidence(watermarked.evidence)
    status = gw.wait_for_tx(gw.register_unsigned(seed_body(watermarked))["tx_hash"])
    assert status.status == "committed", status
    aid, directory = stolen(watermarked, THIEF, tmp_path, nudge=2)
    ml0.upload_artefact(directory / "model.safetensors")
    ev = EvidenceHash.from_hex(ml0.upload_evidence(directory / "evidence.json"))
    forged = gw.wait_for_tx(gw.register_signed(THIEF, aid, ev, PROFILE))
    assert forged.status == "rejected" and "trigger_p_above_floor" in (forged.reason or "")
    ml0.close()
    for node in net.nodes:  # both validators ran V_auth, and hold the owner's record only
        owned = net.rpc(node.index, "abci_query", path=f"/artefacts/{watermarked.aid}", data="")
        assert owned["response"]["code"] == 0
        forged_record = net.rpc(node.index, "abci_query", path=f"/artefacts/{aid}", data="")
        assert forged_record["response"]["code"] != 0
    assert_same_chain(net, [0, 1])


def test_a_killed_validator_replays_what_it_missed_through_the_handshake(net: Testnet) -> None:
    killed = net.stop_validator(1, signal.SIGKILL)
    assert set(killed.values()) == {-signal.SIGKILL}
    net.start_validator(1)
    top = net.height(0)
    net.wait_height(top + 3, 90, [0, 1])  # two validators: no block without both
    assert_same_chain(net, [0, 1])
