"""A stranger with 1,600 funded accounts against a 1-validator CometBFT network started as
`authchain testnet --mempool cometbft` starts it (genesis min_fee, mempool 5,000, app pool
10,000, recheck on; blocks of at most `BLOCK_TXS`):
he squats CometBFT's mempool with gapped nonces, then floods it far above both pools' size
through CometBFT's RPC with the Go load generator (`tools/replay`). Every tx the network admits
can execute and pays its fee; blocks keep coming; a victim's transfer commits; and the app's
pool ends up holding what CometBFT's mempool holds, nothing more."""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterator

import pytest

from authchain import loadgen
from authchain.chain import codec, crypto
from authchain.chain.types import SigScheme, TxTransfer
from authchain.devnet import free_port
from authchain.testnet import MEMPOOL_TXS, MIN_FEE, Testnet
from tests.support.devnet import REPO

STRANGERS = [
    crypto.KeyPair.from_seed(SigScheme.ED25519, i.to_bytes(4, "big") * 8) for i in range(1_600)
]
VICTIM = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x77" * 32)
SINK = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x78" * 32).account
BLOCK_TXS = 250
"""Blocks hold at most this many txs here (the default is 1,000): the flood must outrun the
blocks on any machine, or the mempool never overflows (on this one, blocks of 1,000 drain
about as fast as CheckTx admits, and one run in four never filled it)."""
FULL = {"mempool is full", "mempool_full"}
"""CometBFT's refusal before CheckTx, and the app's when the txs it admitted fill the mempool."""
MAX_BLOCK_GAP_SECS = 5.0
"""The longest a flood may hold up the next block (timeout_commit is 1 s; blocks came every
1.2-1.6 s on a 2-core machine, flood and all)."""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    funded = {str(k.account): 10**6 for k in [*STRANGERS, VICTIM]}
    testnet = Testnet(
        tmp_path_factory.mktemp("flood"), validators=1, first_ip="127.0.0.51", repo=REPO,
        gateway_port=free_port(), gateway_metrics_port=free_port(), funded=funded,
        app_env={"AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS": str(BLOCK_TXS)}, mempool="cometbft",
    )  # fmt: skip
    testnet.start()
    yield testnet
    codes = testnet.stop()
    assert set(codes.values()) == {0}, codes


def signed(key: crypto.KeyPair, nonce: int, fee: int = MIN_FEE) -> bytes:
    tx = TxTransfer(key.account, SINK, 1, fee, nonce)
    return codec.encode(crypto.sign_tx(tx, key, "authchain-testnet"))


def reason(sent: loadgen.Sent) -> str:
    if sent.code is None:
        return sent.error.split(":")[0]  # CometBFT's own refusal, e.g. "mempool is full"
    return str(json.loads(sent.log)["reason"]) if sent.code else "accepted"


def tx_status(net: Testnet, raw: bytes) -> dict[str, object]:
    status: dict[str, object] = net.query(
        0, f"/txs/{codec.compute_tx_hash(codec.decode(raw, TxTransfer))}"
    )
    return status


def victim_commits(net: Testnet, raw: bytes, timeout: float) -> float:
    """Send the victim's transfer (again while CometBFT answers that its mempool is full) and
    wait for it to commit: seconds from the first try."""
    url = net.nodes[0].rpc_url
    started = time.monotonic()
    while True:
        [sent] = loadgen.replay([url], [raw], repo=REPO, concurrency=1).results
        if sent.accepted:
            break
        assert reason(sent) in FULL, sent
        assert time.monotonic() - started < timeout, "the victim's transfer was never admitted"
        time.sleep(0.5)
    while tx_status(net, raw).get("status") != "committed":
        assert time.monotonic() - started < timeout, "the victim's transfer did not commit"
        time.sleep(0.25)
    return time.monotonic() - started


def mempool_size(net: Testnet) -> int:
    return loadgen.mempool_size(net.nodes[0].rpc_url)


def test_txs_pay_the_testnets_min_fee(net: Testnet) -> None:
    assert net.app_status(0)["min_fee"] == MIN_FEE > 0
    free = signed(STRANGERS[0], 0, fee=0)
    [sent] = loadgen.replay([net.nodes[0].rpc_url], [free], repo=REPO).results
    assert reason(sent) == "fee_too_low"


def test_a_squatters_gapped_txs_are_refused_and_a_victims_transfer_commits(net: Testnet) -> None:
    """320 accounts each send nonces next+1 ... next+16 (5,120 txs, once enough to fill the
    mempool with txs no block could include): none is admitted."""
    squat = [[signed(k, n) for n in range(1, 17)] for k in STRANGERS[:320]]
    sent = loadgen.replay([net.nodes[0].rpc_url], loadgen.round_robin(squat), repo=REPO)
    assert len(sent.results) == 320 * 16
    assert collections.Counter(map(reason, sent.results)) == {"nonce_gap": 320 * 16}
    assert mempool_size(net) == 0
    victim_commits(net, signed(VICTIM, 0, fee=2 * MIN_FEE), timeout=30)


def test_a_flood_above_both_pools_never_stops_blocks(net: Testnet) -> None:
    """1,600 accounts send 17 transfers each (27,200: 5 times the mempool, 2.7 times the app's
    pool) with 32 calls in flight; the victim sends one in the middle of it."""
    url = net.nodes[0].rpc_url
    flood = loadgen.round_robin([[signed(k, n) for n in range(17)] for k in STRANGERS])
    first = net.height(0)
    result: dict[str, loadgen.Replayed] = {}
    sender = threading.Thread(
        target=lambda: result.update(flood=loadgen.replay([url], flood, repo=REPO)), daemon=True
    )
    sender.start()
    while mempool_size(net) < MEMPOOL_TXS // 5:  # the flood is on
        assert sender.is_alive(), "the flood ended before it filled a fifth of the mempool"
        time.sleep(0.1)
    waited = victim_commits(net, signed(VICTIM, 1, fee=2 * MIN_FEE), timeout=60)
    sender.join(timeout=300)
    assert not sender.is_alive()
    outcomes = collections.Counter(map(reason, result["flood"].results))
    assert sum(outcomes[r] for r in FULL) > 0, outcomes  # the flood did overflow the mempool
    assert set(outcomes) <= {"accepted", *FULL, "nonce_gap"}, outcomes
    # everything admitted is included within a few blocks, and pays; blocks never stopped
    deadline = time.monotonic() + 120
    while mempool_size(net) > 0:
        assert time.monotonic() < deadline, f"{mempool_size(net)} txs still in the mempool"
        time.sleep(0.5)
    top = net.height(0)
    net.wait_height(top + 3, 30)  # three more rounds: the app forgets what CometBFT dropped
    metas = loadgen.blocks(url, first, net.height(0))
    assert loadgen.largest_gap(metas) <= MAX_BLOCK_GAP_SECS, [(m.height, m.time) for m in metas]
    included = sum(m.txs for m in metas) - 1  # the victim's
    # every tx whose sender was told "accepted" was included: none was dropped afterwards
    assert included == outcomes["accepted"], (included, outcomes)
    # every tx any block included executed and paid: all of this module's go to SINK
    blocks = loadgen.blocks(url, 1, net.height(0))
    assert net.query(0, f"/accounts/{SINK}")["balance"] == sum(m.txs for m in blocks)
    assert net.app_status(0)["pool_size"] == mempool_size(net) == 0
    print(f"flood: {outcomes}, {included} included, victim committed after {waited:.1f}s, "
          f"largest block gap {loadgen.largest_gap(metas):.2f}s")  # fmt: skip
