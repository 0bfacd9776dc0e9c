"""`GET /blocks` (the newest), `GET /blocks/latest` and `GET /blocks/{height_or_hash}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from authchain.chain.schemas import BLOCK_REF_PATTERN, BlockList, BlockPublic, parse_block_ref
from authchain.gateway.deps import NodeDep
from authchain.web import ERROR_RESPONSES

router = APIRouter(prefix="/blocks", tags=["blocks"], responses=ERROR_RESPONSES)


@router.get("")
async def recent_blocks(
    node: NodeDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> BlockList:
    """The newest `limit` canonical blocks, newest first: height, hash, time, proposer, txs."""
    return await node.blocks(limit)


@router.get("/latest")
async def latest_block(node: NodeDep) -> BlockPublic:
    """The tip of the canonical chain."""
    return await node.block()


@router.get("/{ref}")
async def get_block(
    ref: Annotated[str, Path(pattern=BLOCK_REF_PATTERN, description="a height or a block hash")],
    node: NodeDep,
) -> BlockPublic:
    """A block by height (decimal) or hash (64 hex)."""
    return await node.block(parse_block_ref(ref))
