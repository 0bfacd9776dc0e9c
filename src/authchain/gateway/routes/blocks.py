"""`GET /blocks/latest` and `GET /blocks/{height_or_hash}`."""

from __future__ import annotations

from fastapi import APIRouter

from authchain.chain.schemas import BlockPublic
from authchain.gateway.deps import NodeDep
from authchain.gateway.routes.common import relay
from authchain.web import ERROR_RESPONSES, ApiError

router = APIRouter(prefix="/blocks", tags=["blocks"], responses=ERROR_RESPONSES)


@router.get("/latest")
async def latest_block(node: NodeDep) -> BlockPublic:
    """The tip of the canonical chain."""
    return await relay(node, BlockPublic, "GET", "/blocks/latest")


@router.get("/{ref}")
async def get_block(ref: str, node: NodeDep) -> BlockPublic:
    """A block by height (decimal) or hash (64 hex)."""
    if not ref.isalnum() or len(ref) > 66:
        raise ApiError(422, "invalid_request", "ref: expected a height or a 64-hex hash", "ref")
    return await relay(node, BlockPublic, "GET", f"/blocks/{ref}")
