"""`POST /txs`, `POST /txs/batch` (signed transactions) and `GET /txs/{tx_hash}` (status with
Merkle proof)."""

from __future__ import annotations

from fastapi import APIRouter

from authchain.chain.schemas import (
    SubmitTx,
    SubmitTxAccepted,
    SubmitTxBatch,
    SubmitTxBatchResult,
    TxStatus,
)
from authchain.chain.types import TxHash
from authchain.gateway.deps import NodeDep
from authchain.web import ERROR_RESPONSES

router = APIRouter(prefix="/txs", tags=["transactions"], responses=ERROR_RESPONSES)


@router.post("", status_code=202)
async def submit_tx(body: SubmitTx, node: NodeDep) -> SubmitTxAccepted:
    """Submit a signed transaction (hex of its canonical bytes; `authchain register` makes one)."""
    return await node.submit_tx(body)


@router.post("/batch")
async def submit_txs(body: SubmitTxBatch, node: NodeDep) -> SubmitTxBatchResult:
    """Submit up to 500 signed transactions at once; per-tx answers in the order given."""
    return await node.submit_txs(body)


@router.get("/{tx_hash}", response_model_exclude_none=True)
async def get_tx(tx_hash: TxHash, node: NodeDep) -> TxStatus:
    """queued, committed (height, block, RFC 6962 inclusion proof) or rejected (reason)."""
    return await node.tx(tx_hash)
