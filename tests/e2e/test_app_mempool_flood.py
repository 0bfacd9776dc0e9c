"""The squat and the flood of `test_flood.py`, against a 1-validator CometBFT network whose app
holds the pending txs (`authchain testnet --mempool app`: CometBFT's mempool off, txs posted in
batches to the app's intake by the Go load generator, `replay -batch`), app pool 10,000,
blocks of at most `BLOCK_TXS`.

There is no CometBFT mempool to keep runnable here, so the app's pool applies the embedded
node's rules: a gapped nonce is admitted (up to `max_nonce_gap` ahead) and waits, and a full
pool evicts its cheapest stuck tx for one that can run. A squatter's gapped txs therefore sit
in the pool without paying, but cannot keep anyone out: once the pool is full, runnable txs
push them out. Blocks keep coming, a victim's transfer commits during a flood of 2.7 times the
pool, and every tx a block included executed and paid; what is left pooled cannot run."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator

import pytest

from authchain import loadgen
from authchain.chain import codec
from authchain.chain.types import TxTransfer
from authchain.devnet import free_port
from authchain.testnet import MEMPOOL_TXS, MIN_FEE, Testnet
from tests.e2e.test_flood import BLOCK_TXS, MAX_BLOCK_GAP_SECS, SINK, STRANGERS, VICTIM, signed
from tests.support.devnet import REPO

POOL_TXS = 2 * MEMPOOL_TXS
"""The app's pool as `authchain testnet` writes it (`consensus.max_pool_txs`)."""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    funded = {str(k.account): 10**6 for k in [*STRANGERS, VICTIM]}
    testnet = Testnet(
        tmp_path_factory.mktemp("appflood"), validators=1, first_ip="127.0.0.61", repo=REPO,
        gateway_port=free_port(), gateway_metrics_port=free_port(), funded=funded,
        mempool="app", app_env={"AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS": str(BLOCK_TXS)},
    )  # fmt: skip
    testnet.start()
    yield testnet
    codes = testnet.stop()
    assert set(codes.values()) == {0}, codes


def post(net: Testnet, txs: list[bytes], calls: int = 4) -> list[loadgen.Sent]:
    """`txs` posted to the app's intake in batches of 250, `calls` in flight."""
    url = net.nodes[0].txs_url
    return loadgen.replay([url], txs, repo=REPO, concurrency=calls, batch=250).results


def reason(sent: loadgen.Sent) -> str:
    return "accepted" if sent.accepted else sent.log or sent.error


def pool_size(net: Testnet) -> int:
    return int(net.app_status(0)["pool_size"])


def victim_commits(net: Testnet, raw: bytes, timeout: float) -> float:
    """Send the victim's transfer (again while the pool answers that it is full) and wait for it
    to commit: seconds from the first try."""
    started = time.monotonic()
    tx_hash = codec.compute_tx_hash(codec.decode(raw, TxTransfer))
    while True:
        [sent] = post(net, [raw], calls=1)
        if sent.accepted:
            break
        assert reason(sent) == "pool_full", sent
        assert time.monotonic() - started < timeout, "the victim's transfer was never admitted"
        time.sleep(0.5)
    while net.query(0, f"/txs/{tx_hash}").get("status") != "committed":
        assert time.monotonic() - started < timeout, "the victim's transfer did not commit"
        time.sleep(0.25)
    return time.monotonic() - started


def test_a_squat_then_a_flood_above_the_pool_never_stops_blocks_or_keeps_a_victim_out(
    net: Testnet,
) -> None:
    url = net.nodes[0].rpc_url
    first = net.height(0)
    # the squat: 320 accounts each send nonces next+1 ... next+16, none of which can run
    squat = loadgen.round_robin([[signed(k, n) for n in range(1, 17)] for k in STRANGERS[:320]])
    squatted = collections.Counter(map(reason, post(net, squat)))
    assert squatted == {"accepted": 320 * 16}, squatted  # admitted, waiting on nonce 0
    assert pool_size(net) == 320 * 16
    victim_commits(net, signed(VICTIM, 0, fee=2 * MIN_FEE), timeout=30)
    # the flood: 1,600 accounts, 17 runnable transfers each (27,200: 2.7 times the pool)
    flood = loadgen.round_robin([[signed(k, n) for n in range(17)] for k in STRANGERS[320:]])
    flood += loadgen.round_robin([[signed(k, n) for n in range(17)] for k in STRANGERS[:320]])
    result: dict[str, list[loadgen.Sent]] = {}
    sender = threading.Thread(target=lambda: result.update(flood=post(net, flood)), daemon=True)
    sender.start()
    while pool_size(net) < POOL_TXS:  # the pool is full
        assert sender.is_alive(), "the flood ended before it filled the pool"
        time.sleep(0.1)
    waited = victim_commits(net, signed(VICTIM, 1, fee=2 * MIN_FEE), timeout=60)
    sender.join(timeout=300)
    assert not sender.is_alive()
    outcomes = collections.Counter(map(reason, result["flood"]))
    assert outcomes["pool_full"] > 0, outcomes  # the flood did overflow the pool
    # the squatters resend their nonces 1-16 (Ed25519 signs deterministically: the same bytes)
    assert set(outcomes) <= {"accepted", "pool_full", "duplicate", "nonce_too_low"}, outcomes
    # what can run is included: blocks go empty, and what stays pooled waits on a nonce no one
    # sent (a flood tx evicted for the victim's, or a squatter's gap) until it expires
    deadline = time.monotonic() + 180
    while True:
        top = net.height(0)
        if top > first + 3 and not any(m.txs for m in loadgen.blocks(url, top - 2, top)):
            break
        assert time.monotonic() < deadline, f"blocks still full at {top}: {pool_size(net)} pooled"
        time.sleep(1)
    left = pool_size(net)
    assert left < outcomes["accepted"] // 10, (left, outcomes)
    metas = loadgen.blocks(url, first, net.height(0))
    assert loadgen.largest_gap(metas) <= MAX_BLOCK_GAP_SECS, [(m.height, m.time) for m in metas]
    # every tx any block included executed and paid: all of this module's go to SINK
    blocks = loadgen.blocks(url, 1, net.height(0))
    assert net.query(0, f"/accounts/{SINK}")["balance"] == sum(m.txs for m in blocks)
    gap = loadgen.largest_gap(metas)
    print(f"app pool flood: squat {squatted}, flood {outcomes}, {left} left stuck, victim "
          f"committed after {waited:.1f}s, largest block gap {gap:.2f}s")  # fmt: skip
