"""`NodeClient`: how the gateway reaches a node's RPC, with failover across several nodes.

A node's own answers (2xx, and 4xx with an `ErrorBody`) are passed back as they are. A
transport error, a timeout or a 502/504 moves on to the next URL; the last URL that answered
is tried first next time. When no node answers, `NodeUnavailable` is raised and the gateway
replies 503.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from authchain.web import Failover

log = logging.getLogger(__name__)


class NodeUnavailable(Exception):
    """No node answered."""


class NodeClient(Protocol):
    """What the gateway needs from a node."""

    async def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """The node's answer to `method path`; raise NodeUnavailable if none answers."""
        ...

    async def aclose(self) -> None: ...


class HttpNodeClient:
    """`NodeClient` over HTTP to one or more node RPC servers."""

    def __init__(self, urls: Sequence[str], *, timeout_secs: float) -> None:
        self.failover = Failover(urls, "HttpNodeClient")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_secs), transport=httpx.AsyncHTTPTransport(retries=1)
        )

    async def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        problems = []
        for url in self.failover.order():
            try:
                response = await self._client.request(method, f"{url}{path}", json=json)
            except httpx.TransportError as exc:
                problems.append(f"{url}: {type(exc).__name__}")
                continue
            if response.status_code in (502, 504):
                problems.append(f"{url}: HTTP {response.status_code}")
                continue
            self.failover.answered(url)
            return response
        log.warning("no node answered %s %s: %s", method, path, "; ".join(problems))
        raise NodeUnavailable("; ".join(problems))

    async def aclose(self) -> None:
        await self._client.aclose()
