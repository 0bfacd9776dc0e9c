"""The gateway's FastAPI app (seed `api-gateway/src/main.rs`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from authchain import __version__
from authchain.chain.errors import Rejected
from authchain.chain.schemas import MAX_BATCH_BYTES
from authchain.gateway import explorer
from authchain.gateway.comet_client import CometNodeClient
from authchain.gateway.config import ApiSettings, get_settings
from authchain.gateway.metrics import GatewayMetrics
from authchain.gateway.node_client import HttpNodeClient, NodeClient, NodeUnavailable, api_error
from authchain.gateway.routes import ROUTERS
from authchain.web import BodyLimit, add_metrics_route, install_error_handlers


def create_app(settings: ApiSettings | None = None, node: NodeClient | None = None) -> FastAPI:
    """The gateway for `settings`, talking to `node`: by default CometBFT's RPC where
    `comet_rpc_urls` is set (a CometBFT network), else the embedded node's RPC (`node_urls`)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="authchain gateway",
        version=__version__,
        description="Public API of an authchain network: register models, follow transactions, "
        "read blocks, models and accounts.",
    )
    app.state.settings = settings
    if node is None and settings.comet_rpc_urls:
        node = CometNodeClient(
            settings.comet_rpc_urls,
            timeout_secs=settings.node_timeout_secs,
            txs_urls=settings.comet_txs_urls,
        )
    app.state.node = node or HttpNodeClient(
        settings.node_urls, timeout_secs=settings.node_timeout_secs
    )
    app.state.metrics = metrics = GatewayMetrics()
    install_error_handlers(app)

    @app.exception_handler(Rejected)
    @app.exception_handler(NodeUnavailable)
    async def _node_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Rejected | NodeUnavailable)
        return api_error(exc).response()

    for router in ROUTERS:
        app.include_router(router)
    app.include_router(explorer.router)  # the web explorer's pages, at /
    app.mount("/static", explorer.static, name="static")
    add_metrics_route(app, metrics.registry)

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # the router records the route it matched in the (shared) scope: label by its template
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route=route, status=str(response.status_code)).inc()
        metrics.latency.labels(route=route).observe(time.perf_counter() - started)
        return response

    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, path_limits={"/txs/batch": MAX_BATCH_BYTES}
    )
    return app
