"""Relaying node answers to gateway clients."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from authchain.gateway.node_client import NodeClient, NodeUnavailable
from authchain.web import ApiError

M = TypeVar("M", bound=BaseModel)


async def call_node(node: NodeClient, method: str, path: str, json: Any = None) -> Any:
    """The node's JSON answer for a 2xx; ApiError carrying the node's error otherwise."""
    try:
        response = await node.request(method, path, json)
    except NodeUnavailable as exc:
        raise ApiError(503, "node_unavailable", f"no node answered: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.is_success:
        return body
    if not isinstance(body, dict):
        body = {}
    raise ApiError(
        response.status_code,
        str(body.get("reason", "node_error")),
        str(body.get("detail", response.text[:200])),
        body.get("field"),
    )


async def relay(node: NodeClient, kind: type[M], method: str, path: str, json: Any = None) -> M:
    """The node's answer as `kind` (which documents it in OpenAPI)."""
    return kind.model_validate(await call_node(node, method, path, json))
