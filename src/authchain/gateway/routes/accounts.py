"""`GET /accounts/{account}`, `GET /accounts/{account}/proof` and `GET /status` (the node's
status, through the gateway)."""

from __future__ import annotations

from fastapi import APIRouter

from authchain.chain.schemas import AccountPublic, NodeStatus, StateProofPublic
from authchain.chain.types import AccountId
from authchain.gateway.deps import NodeDep
from authchain.web import ERROR_RESPONSES

router = APIRouter(tags=["state"], responses=ERROR_RESPONSES)


@router.get("/accounts/{account}")
async def get_account(account: AccountId, node: NodeDep) -> AccountPublic:
    """Balance, nonce and next nonce of an account."""
    return await node.account(account)


@router.get("/accounts/{account}/proof")
async def get_account_proof(account: AccountId, node: NodeDep) -> StateProofPublic:
    """The account's state entry with its Merkle proof against the app hash at `height`:
    `StateProofPublic.verify()` checks it (compare `app_hash` with a header you trust)."""
    return await node.account_proof(account)


@router.get("/status")
async def get_status(node: NodeDep) -> NodeStatus:
    """The node's chain: id, height, tip, pool size, impersonation."""
    return await node.status()
