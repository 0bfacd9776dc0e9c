"""The apps hold the pending txs (`authchain testnet --mempool app`): two real `cometbft`
processes on 127.0.0.91-92 run with their mempool off (`[mempool] type = "nop"`), and each
`authchain abci` takes txs on its own intake, relays them to the other and proposes from its
own durable pool. The gateway submits to the intakes; CometBFT refuses broadcasts; a tx sent
to one validator is proposed by the other; a tx accepted while no block can be made survives
SIGKILL of every process that saw it. README, "Where pending txs live", has the measurements."""

from __future__ import annotations

import signal
import time
import tomllib
from collections.abc import Iterator

import httpx
import pytest

from authchain import loadgen
from authchain.chain import codec, crypto
from authchain.chain.schemas import verify_tx_status_proof
from authchain.chain.types import SigScheme, Transaction, TxTransfer
from authchain.client import ClientError, GatewayClient
from authchain.devnet import free_port
from authchain.testnet import MIN_FEE, Testnet
from tests.e2e.test_cometbft import assert_same_chain
from tests.support.devnet import REPO

SENDERS = [crypto.KeyPair.from_seed(SigScheme.ED25519, bytes([0xA0 + i]) * 32) for i in range(3)]
SINK = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\xaf" * 32)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    testnet = Testnet(
        tmp_path_factory.mktemp("appmempool"), validators=2, first_ip="127.0.0.91", repo=REPO,
        gateway_port=free_port(), gateway_metrics_port=free_port(), mempool="app",
        funded={str(k.account): 10**6 for k in SENDERS},
    )  # fmt: skip
    testnet.start()
    yield testnet
    codes = testnet.stop()
    assert set(codes.values()) == {0}, codes  # the intake and the relay stop on SIGTERM too


@pytest.fixture(scope="module")
def gw(net: Testnet) -> Iterator[GatewayClient]:
    client = GatewayClient(net.gateway_url)
    yield client
    client.close()


def transfer(sender: crypto.KeyPair, nonce: int, chain_id: str) -> bytes:
    tx = TxTransfer(sender.account, SINK.account, 1, MIN_FEE, nonce)
    return codec.encode(crypto.sign_tx(tx, sender, chain_id))


def tx_hash(raw: bytes) -> str:
    return str(codec.compute_tx_hash(codec.decode(raw, TxTransfer)))


def test_cometbft_runs_without_its_mempool_and_refuses_broadcasts(net: Testnet) -> None:
    for node in net.nodes:
        comet = tomllib.loads((node.home / "config" / "config.toml").read_text())
        assert comet["mempool"]["type"] == "nop"
        log = (node.root / "logs" / "abci.log").read_text()
        assert f"intake on {node.txs_url}, relaying to 1 peer(s)" in log
    raw = transfer(SENDERS[0], 0, net.chain_id)
    [refused] = loadgen.replay([net.nodes[0].rpc_url], [raw], repo=REPO, concurrency=1).results
    assert refused.code is None and "nop" in refused.error


def test_a_tx_through_the_gateway_commits_with_a_proof_and_refusals_keep_their_reasons(
    net: Testnet, gw: GatewayClient
) -> None:
    sender = SENDERS[0]

    def signed(fee: int, nonce: int) -> Transaction:
        return crypto.sign_tx(
            TxTransfer(sender.account, SINK.account, 1, fee, nonce), sender, net.chain_id
        )

    hashes = [gw.submit(signed(MIN_FEE, 0))]
    batch = gw.submit_many([signed(MIN_FEE, 1), signed(MIN_FEE, 1)])
    assert batch.accepted == 1 and batch.results[1].reason == "duplicate"
    with pytest.raises(ClientError) as refused:
        gw.submit(signed(0, 2))
    assert refused.value.status == 400 and refused.value.reason == "fee_too_low"
    hashes.append(str(batch.results[0].tx_hash))
    for h in hashes:
        status = gw.wait_for_tx(h)
        assert status.status == "committed" and verify_tx_status_proof(status), status
    assert gw.account(sender.account)["next_nonce"] == 2


def test_a_tx_sent_to_one_validator_is_proposed_by_the_other(net: Testnet) -> None:
    """Without the relay, only the validator that took a tx could propose it: so a tx taken
    by validator 1 in a block proposed by validator 0 crossed the relay."""
    sender = SENDERS[1]
    raws = [transfer(sender, n, net.chain_id) for n in range(12)]
    for raw in raws:  # one at a time, across about six blocks
        answer = httpx.post(f"{net.nodes[1].txs_url}/txs", json={"tx": raw.hex()}, timeout=30)
        assert answer.status_code == 202, answer.text
        time.sleep(0.5)
    proposers = set()
    for raw in raws:
        status = net.query(0, f"/txs/{tx_hash(raw)}")
        for _ in range(60):
            if status.get("status") == "committed":
                break
            time.sleep(0.5)
            status = net.query(0, f"/txs/{tx_hash(raw)}")
        assert status.get("status") == "committed", status
        block = net.rpc(0, "block", height=str(status["height"]))["block"]
        proposers.add(block["header"]["proposer_address"])
    validator0 = net.rpc(0, "status")["validator_info"]["address"]
    assert validator0 in proposers
    exported = httpx.get(f"http://{net.nodes[1].host}:9898/metrics", timeout=10).text
    relayed = [
        line
        for line in exported.splitlines()
        if line.startswith("txpool_txs_relayed_total")
        and f'peer="{net.nodes[0].txs_url}"' in line
        and 'result="sent"' in line
    ]
    assert relayed and float(relayed[0].split()[-1]) >= len(raws), relayed
    assert_same_chain(net, [0, 1])


def test_a_tx_accepted_while_no_block_can_be_made_survives_sigkill(
    net: Testnet, gw: GatewayClient
) -> None:
    """Validator 1 down: two validators make no block without both, and the relay to it
    fails. Validator 0 accepts a tx, then both of its processes are SIGKILLed: the tx was in
    its RocksDB before the answer, so once both run again it commits."""
    net.stop_validator(1, signal.SIGKILL)
    raw = transfer(SENDERS[2], 0, net.chain_id)
    answer = httpx.post(f"{net.nodes[0].txs_url}/txs", json={"tx": raw.hex()}, timeout=30)
    assert answer.status_code == 202, answer.text
    # the gateway reads the pool's size from the app (CometBFT's mempool is off: always 0)
    assert gw.status()["pool_size"] == 1 and loadgen.mempool_size(net.nodes[0].rpc_url) == 0
    killed = net.stop_validator(0, signal.SIGKILL)
    assert set(killed.values()) == {-signal.SIGKILL}
    net.start_validator(0)
    net.start_validator(1)
    for _ in range(120):
        status = net.query(0, f"/txs/{tx_hash(raw)}")
        if status.get("status") == "committed":
            break
        time.sleep(0.5)
    assert status.get("status") == "committed", status  # lost: {"reason": "unknown_tx"}
    assert_same_chain(net, [0, 1])
