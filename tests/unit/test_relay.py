"""`Relay` (`abci.mempool = "app"`): the txs a validator admitted reach the other validators'
intakes in order, marked relayed, in batches within the intake's limits; a full queue or a
dead peer costs a count, never memory or the other peers' txs. The peers here are httpx mock
transports (a unit test starts no server); `tests/e2e/test_app_mempool.py` runs real ones."""

from __future__ import annotations

import asyncio
import json

import httpx

from authchain.chain.abci.relay import Relay
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.rpc import RELAYED_HEADER
from authchain.chain.schemas import MAX_BATCH_BYTES, MAX_BATCH_TXS

PEERS = ["http://127.0.0.2:26659", "http://127.0.0.3:26659"]


class Peers:
    """Records each batch posted, per peer; `dead` peers refuse connections."""

    def __init__(self, dead: frozenset[str] = frozenset()) -> None:
        self.batches: dict[str, list[list[bytes]]] = {url: [] for url in PEERS}
        self.dead = dead
        self.bodies: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        base = str(request.url).removesuffix("/txs/batch")
        assert str(request.url).endswith("/txs/batch")
        if base in self.dead:
            raise httpx.ConnectError("refused", request=request)
        assert request.headers.get(RELAYED_HEADER) == "1"
        self.bodies.append(len(request.content))
        txs = [bytes.fromhex(t) for t in json.loads(request.content)["txs"]]
        self.batches[base].append(txs)
        return httpx.Response(200, json={"accepted": len(txs), "results": []})


async def relay_all(relay: Relay, txs: list[bytes], expected: int) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    relay.offer(txs)
    for _ in range(2000):
        if sum(relay.sent.values()) + sum(relay.dropped.values()) >= expected:
            break
        await asyncio.sleep(0.001)
    stop.set()
    await running


async def test_every_admitted_tx_reaches_every_peer_once_in_order_within_the_intakes_limits() -> (
    None
):
    peers = Peers()
    relay = Relay(PEERS, transport=httpx.MockTransport(peers))
    txs = [i.to_bytes(4, "big") * 1340 for i in range(1200)]  # 5,360 bytes, an ML-DSA-65 tx's
    await relay_all(relay, txs, 2 * len(txs))
    for url in PEERS:
        got = [tx for batch in peers.batches[url] for tx in batch]
        assert got == txs  # each once, in the order admitted
        assert all(len(batch) <= MAX_BATCH_TXS for batch in peers.batches[url])
        assert len(peers.batches[url]) > 1  # 12.9 MB of hex cannot go in one body
    assert max(peers.bodies) <= MAX_BATCH_BYTES
    assert relay.sent == dict.fromkeys(PEERS, len(txs))
    assert relay.dropped == dict.fromkeys(PEERS, 0)


async def test_a_full_queue_is_counted_not_grown() -> None:
    relay = Relay(PEERS, max_queued=10, transport=httpx.MockTransport(Peers()))
    relay.offer([bytes([i]) for i in range(25)])  # nothing posts: run() has not started
    assert relay.dropped == dict.fromkeys(PEERS, 15)
    assert all(q.qsize() == 10 for q in relay._queues.values())


async def test_a_dead_peer_costs_its_own_txs_only() -> None:
    dead = PEERS[0]
    peers = Peers(dead=frozenset({dead}))
    metrics = ChainMetrics()
    relay = Relay(PEERS, retry_secs=0.0, metrics=metrics, transport=httpx.MockTransport(peers))
    txs = [bytes([i]) * 100 for i in range(50)]
    await relay_all(relay, txs, 2 * len(txs))
    assert [tx for batch in peers.batches[PEERS[1]] for tx in batch] == txs
    assert relay.sent == {dead: 0, PEERS[1]: len(txs)}
    assert relay.dropped == {dead: len(txs), PEERS[1]: 0}
    counted = {
        (peer, result): metrics.registry.get_sample_value(
            "txpool_txs_relayed_total", {"peer": peer, "result": result}
        )
        for peer in PEERS
        for result in ("sent", "dropped")
    }
    assert counted == {
        (dead, "sent"): None,  # never sent: no series
        (dead, "dropped"): len(txs),
        (PEERS[1], "sent"): len(txs),
        (PEERS[1], "dropped"): None,
    }
