"""HTTP plumbing shared by the node RPC, the gateway and the ML service.

- `ApiError` and `install_error_handlers`: every error a client can cause becomes a 4xx whose
  JSON body is `ErrorBody{detail, reason, field}`; request validation errors name the field
  (`wm_profile.tau_input`), never a traceback.
- `BodyLimit`: refuses a request body over a size limit with 413 before the app reads it.
- `serve`: runs uvicorn servers inside the caller's event loop without letting uvicorn take
  over SIGINT/SIGTERM, so a process can run several servers and shut them down together.

This module imports nothing from `chain`, `gateway` or `ml_service`; all three may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send a whole request head."""
READ_TIMEOUT = 30.0
"""Seconds a request body may stall between chunks."""
MAX_CONNECTIONS = 512
"""Concurrent connections (and tasks) per server; above it uvicorn answers 503."""

# `*_created` timestamp series double every counter's output and nobody here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class ErrorBody(BaseModel):
    """Every error answer: a message, a stable reason code, and the field at fault if any."""

    detail: str
    reason: str
    field: str | None = None


class ApiError(Exception):
    """An error to answer with `status` and an `ErrorBody`."""

    def __init__(self, status: int, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.field = field

    def response(self) -> JSONResponse:
        body = ErrorBody(detail=self.detail, reason=self.reason, field=self.field)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=self.status)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
}
"""`responses=` for routes, so the OpenAPI docs show the error shape."""


def _field_of(loc: Sequence[Any]) -> str:
    # ("body", "wm_profile", "tau_input") -> "wm_profile.tau_input"; ("path", "aid") -> "aid"
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "path", "query") else loc
    return ".".join(str(p) for p in parts) or "body"


def describe_validation_error(errors: Sequence[Any]) -> tuple[str, str]:
    """(first field, message naming every bad field) for pydantic/FastAPI errors."""
    fields, messages = [], []
    for e in errors:
        field = _field_of(e.get("loc", ()))
        message = e.get("msg", "invalid").removeprefix("Value error, ")
        last = field.rpartition(".")[2]
        message = message.removeprefix(f"{last}: ")  # InvalidField already names the field
        fields.append(field)
        messages.append(f"{field}: {message}")
    return (fields[0] if fields else "body"), "; ".join(messages)


def install_error_handlers(app: FastAPI) -> None:
    """Answer ApiError, validation errors and HTTP errors with `ErrorBody`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = describe_validation_error(exc.errors())
        return ApiError(422, "invalid_request", message, field).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = ApiError(exc.status_code, reason, str(exc.detail)).response()
        for name, value in (exc.headers or {}).items():  # 405 carries `Allow`
            response.headers[name] = value
        return response


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes` (declared or streamed), 408
    for a body that stalls for `read_timeout` seconds."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        read_timeout: float = READ_TIMEOUT,
        exempt_methods: frozenset[str] | set[str] = frozenset(),
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})
        """Routes with their own limit (a batch endpoint), by exact path."""
        self.read_timeout = read_timeout
        self.exempt_methods = frozenset(exempt_methods)
        """Methods whose handlers enforce their own size limit while streaming (uploads)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int | None = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        if scope.get("method") in self.exempt_methods:
            limit = None
        for name, value in scope.get("headers", ()):
            if limit is None:
                break
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._too_big(limit)(scope, receive, send)
                return
        seen = 0
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def limited_receive() -> Message:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if limit is not None and seen > limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge:
            if not started:
                await self._too_big(limit)(scope, receive, send)
        except _BodyTimeout:
            if not started:
                detail = f"the request body stalled for {self.read_timeout:g} s"
                await ApiError(408, "request_timeout", detail).response()(scope, receive, send)

    def _too_big(self, limit: int | None = None) -> JSONResponse:
        detail = f"request body is larger than {limit or self.max_bytes} bytes"
        return ApiError(413, "body_too_large", detail).response()


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


class _TimedH11(H11Protocol):
    """uvicorn's h11 protocol with a header timeout: a connection that has not sent a whole
    request head within `HEADER_TIMEOUT` seconds of connecting (or of its last response) is
    closed, so idle or half-open connections cannot pile up."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # waiting for (the rest of) a request head
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def add_metrics_route(app: FastAPI, registry: CollectorRegistry, path: str = "/metrics") -> None:
    """Serve `registry` in the Prometheus text format at exactly `path` (no redirect)."""

    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(path, metrics, methods=["GET"], include_in_schema=False)


class Failover:
    """Replica base URLs tried in order, starting with the last one that answered."""

    def __init__(self, urls: Sequence[str], what: str) -> None:
        if not urls:
            raise ValueError(f"{what} needs at least one URL")
        self.urls = [url.rstrip("/") for url in urls]
        self._preferred = 0

    def order(self) -> list[str]:
        """The URLs to try now, the last good one first."""
        return self.urls[self._preferred :] + self.urls[: self._preferred]

    def answered(self, url: str) -> None:
        """Remember that `url` answered."""
        self._preferred = self.urls.index(url)


class Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(listen_addr: str) -> socket.socket:
    """A listening-ready TCP socket bound to `host:port` (port 0: the OS picks)."""
    host, _, port = listen_addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. asyncio sets TCP_NODELAY itself only on sockets whose
    # proto is IPPROTO_TCP, and this one's is 0: without it every response (headers, then
    # body) waited ~40 ms for the client's delayed ACK (Nagle), whatever the request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {listen_addr}: {exc.strerror or exc}") from exc
    return sock


def make_server(app: ASGIApp, *, log_level: str = "warning") -> Server:
    """A uvicorn `Server` for `app` without access logs (the app logs what matters), with a
    header timeout, a body read timeout (`BodyLimit`), a keep-alive timeout and a cap on
    concurrent connections (503 above it)."""
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="off", server_header=False,
        http=_TimedH11, timeout_keep_alive=5, limit_concurrency=MAX_CONNECTIONS,
    )  # fmt: skip
    return Server(config)


async def serve_until_signalled(
    apps: Sequence[tuple[ASGIApp, str]], log_level: str = "warning"
) -> None:
    """Serve each (app, listen_addr) until SIGINT or SIGTERM, then shut all down cleanly."""
    import signal

    sockets = [bind(addr) for _, addr in apps]
    servers = [make_server(app, log_level=log_level) for app, _ in apps]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(
            *(s.serve(sockets=[sock]) for s, sock in zip(servers, sockets, strict=True))
        )
    finally:
        for sock in sockets:
            sock.close()
