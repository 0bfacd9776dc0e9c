"""`authchain abci`: open the application over its own RocksDB and serve it to CometBFT, over
the ABCI socket or gRPC (`abci.transport`)."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import make_asgi_app

from authchain.chain.abci.server import AbciServer
from authchain.chain.app import Application
from authchain.chain.config import ChainConfig
from authchain.chain.misbehaving import MisbehavingApplication
from authchain.chain.ml_client import HttpMlVerifier
from authchain.chain.node import open_parts
from authchain.web import bind, make_server

log = logging.getLogger(__name__)


async def run_abci(config: ChainConfig) -> None:
    """Serve the application until SIGINT/SIGTERM; then close the store."""
    parts = open_parts(config)
    try:
        kind = MisbehavingApplication if config.abci.include_unverified_claims else Application
        app = kind(
            parts.store,
            parts.genesis,
            config.consensus,
            parts.ml,
            metrics=parts.metrics,
            persist_pool=False,
            mempool=(config.abci.mempool_size, config.abci.mempool_max_txs_bytes),
        )
        server = AbciServer(app, unavailable_wait_secs=config.abci.unavailable_wait_secs)
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
        if config.metrics.enabled:
            metrics = make_server(make_asgi_app(registry=parts.metrics.registry))
            sock = bind(config.metrics.listen_addr)
            tasks.append(asyncio.create_task(metrics.serve(sockets=[sock])))
            log.info("metrics exporter listening on http://%s/metrics", config.metrics.listen_addr)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        if config.metrics.enabled:
            metrics.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
    finally:
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
