"""`Relay`: hands the txs a validator admitted from its clients to the other validators, when
the apps hold the pending txs (`abci.mempool = "app"`, CometBFT's mempool off).

CometBFT's own mempool gossips each tx to its peers; with it off, the app does: every tx this
node admits from a client is queued for each peer and posted, in batches, to the peer's
intake (`POST /txs/batch` with `RELAYED_HEADER`, so that the peer admits it by its own rules
and relays it no further). A tx therefore reaches every validator's pool once, whoever
proposes next.

Nothing here can grow without bound or stall the node: each peer has a queue of at most
`max_queued` txs (a tx that finds it full is not relayed to that peer, and is counted); a peer
that does not answer costs one request per `retry_secs`; the posts run in their own tasks, off
the path that answers CometBFT. A tx a peer missed is still proposed by this node at its turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx

from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.rpc import RELAYED_HEADER
from authchain.chain.schemas import MAX_BATCH_BYTES, MAX_BATCH_TXS

log = logging.getLogger(__name__)


class Relay:
    """Posts admitted txs (their canonical bytes) to each of `peers` (intake base URLs)."""

    def __init__(
        self,
        peers: Sequence[str],
        *,
        max_queued: int = 20_000,
        timeout_secs: float = 10.0,
        retry_secs: float = 1.0,
        metrics: ChainMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.peers = list(peers)
        self.metrics = metrics
        """`txpool_txs_relayed{peer, result}` counts what `sent` and `dropped` count."""
        self._queues: dict[str, asyncio.Queue[bytes]] = {
            url: asyncio.Queue(maxsize=max_queued) for url in self.peers
        }
        self.retry_secs = retry_secs
        self.sent = dict.fromkeys(self.peers, 0)
        """Txs each peer took (admitted or refused by its rules: either way it has seen them)."""
        self.dropped = dict.fromkeys(self.peers, 0)
        """Txs not relayed to each peer: its queue was full, or its intake did not answer."""
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_secs), transport=transport)

    def offer(self, txs: Sequence[bytes]) -> None:
        """Queue `txs` for every peer; never waits."""
        for url, queue in self._queues.items():
            for raw in txs:
                try:
                    queue.put_nowait(raw)
                except asyncio.QueueFull:
                    self._count(url, "dropped", 1)

    async def run(self, stop: asyncio.Event) -> None:
        """Post to every peer until `stop` is set; then close the client."""
        tasks = [asyncio.create_task(self._post_to(url)) for url in self.peers]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._client.aclose()

    async def _post_to(self, url: str) -> None:
        """Post `url`'s queue in arrival order, in batches within the intake's limits."""
        queue = self._queues[url]
        carried: bytes | None = None  # taken from the queue, but the batch was full
        while True:
            batch = [carried if carried is not None else await queue.get()]
            carried, size = None, _body_bytes(batch[0])
            while not queue.empty() and len(batch) < MAX_BATCH_TXS:
                raw = queue.get_nowait()
                if size + _body_bytes(raw) > MAX_BATCH_BYTES - 1024:
                    carried = raw
                    break
                batch.append(raw)
                size += _body_bytes(raw)
            await self._post(url, batch)

    async def _post(self, url: str, batch: list[bytes]) -> None:
        try:
            response = await self._client.post(
                f"{url}/txs/batch",
                json={"txs": [raw.hex() for raw in batch]},
                headers={RELAYED_HEADER: "1"},
            )
        except httpx.TransportError as exc:
            response = None
            problem = type(exc).__name__
        if response is not None and response.is_success:
            self._count(url, "sent", len(batch))
            return
        if response is not None:
            problem = f"HTTP {response.status_code}"
        self._count(url, "dropped", len(batch))
        log.warning("relay to %s: %d txs not taken (%s)", url, len(batch), problem)
        await asyncio.sleep(self.retry_secs)

    def _count(self, url: str, result: str, n: int) -> None:
        (self.sent if result == "sent" else self.dropped)[url] += n
        if self.metrics:
            self.metrics.txs_relayed.labels(peer=url, result=result).inc(n)


def _body_bytes(raw: bytes) -> int:
    """What a tx adds to a batch's JSON body: its hex, two quotes and a comma."""
    return 2 * len(raw) + 3
