"""`authchain abci`: open the application over its own RocksDB and serve it to CometBFT, over
the ABCI socket or gRPC (`abci.transport`); with `abci.mempool = "app"`, also the tx intake
whose admitted txs the `Relay` hands to the other validators."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from prometheus_client import make_asgi_app

from authchain.chain import codec
from authchain.chain.abci.relay import Relay
from authchain.chain.abci.server import AbciServer
from authchain.chain.app import Application
from authchain.chain.config import ChainConfig
from authchain.chain.errors import Rejected
from authchain.chain.misbehaving import MisbehavingApplication
from authchain.chain.ml_client import HttpMlVerifier
from authchain.chain.node import open_parts
from authchain.chain.rpc import Admit, create_intake_app
from authchain.chain.types import Transaction, TxHash
from authchain.web import bind, make_server

log = logging.getLogger(__name__)


async def run_abci(config: ChainConfig) -> None:
    """Serve the application until SIGINT/SIGTERM; then close the store."""
    parts = open_parts(config)
    app_mempool = config.abci.mempool == "app"
    app: Application | None = None
    try:
        kind = MisbehavingApplication if config.abci.include_unverified_claims else Application
        app = kind(
            parts.store,
            parts.genesis,
            config.consensus,
            parts.ml,
            metrics=parts.metrics,
            persist_pool=app_mempool,
            mempool=(0, 0)
            if app_mempool
            else (config.abci.mempool_size, config.abci.mempool_max_txs_bytes),
        )
        server = AbciServer(
            app, unavailable_wait_secs=config.abci.unavailable_wait_secs, app_mempool=app_mempool
        )
        info = app.info()
        log.info(
            "chain %s: application at height %d, app hash %s",
            parts.genesis.chain_id, info.height, info.app_hash.short(),
        )  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if config.abci.transport == "grpc":
            serving = _serve_grpc(server, config.abci.listen_addr, stop)
        else:
            serving = server.serve(config.abci.listen_addr, stop)
        tasks = [asyncio.create_task(serving)]
        servers = []
        if app_mempool:
            relay = Relay(config.abci.mempool_peers, metrics=parts.metrics)
            admit = _relaying(app, relay) if relay.peers else app.admit
            intake = make_server(create_intake_app(admit, app.admit))
            servers.append(intake)
            app.signatures.start()  # the workers that verify a batch's signatures
            sock = bind(config.abci.txs_listen_addr)
            tasks += [
                asyncio.create_task(intake.serve(sockets=[sock])),
                asyncio.create_task(relay.run(stop)),
            ]
            log.info(
                "the app holds the pending txs: intake on http://%s, relaying to %d peer(s)",
                config.abci.txs_listen_addr, len(relay.peers),
            )  # fmt: skip
        if config.metrics.enabled:
            metrics = make_server(make_asgi_app(registry=parts.metrics.registry))
            servers.append(metrics)
            sock = bind(config.metrics.listen_addr)
            tasks.append(asyncio.create_task(metrics.serve(sockets=[sock])))
            log.info("metrics exporter listening on http://%s/metrics", config.metrics.listen_addr)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for uvicorn_server in servers:
            uvicorn_server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        if app is not None:
            app.close()
        if isinstance(parts.verifier, HttpMlVerifier):
            await parts.verifier.aclose()
        parts.store.close()


async def _serve_grpc(server: AbciServer, listen: str, stop: asyncio.Event) -> None:
    """`serve_grpc`, imported only when asked for: grpcio comes with the `cometbft` extra,
    and the chain's container image, which serves the socket, leaves it out."""
    try:
        from authchain.chain.abci.grpc_server import serve_grpc
    except ImportError as exc:
        raise SystemExit(
            f"abci.transport = 'grpc' needs grpcio ({exc}): pip install 'authchain[cometbft]'"
        ) from exc
    await serve_grpc(server, listen, stop)


def _relaying(app: Application, relay: Relay) -> Admit:
    """`app.admit`, then the txs it admitted queued for the other validators."""

    async def admit(txs: Sequence[Transaction]) -> list[TxHash | Rejected]:
        results = await app.admit(txs)
        relay.offer(
            [
                codec.encode(tx)
                for tx, r in zip(txs, results, strict=True)
                if not isinstance(r, Rejected)
            ]
        )
        return results

    return admit
