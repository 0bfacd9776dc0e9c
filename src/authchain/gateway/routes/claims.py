"""`GET /claims` (registrations as V_auth judged them), `GET /disputes/{tx_hash}` and
`GET /validators`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from authchain.chain.schemas import (
    MAX_CLAIMS,
    ClaimList,
    ClaimQuery,
    ClaimStatus,
    DisputePublic,
    ValidatorList,
)
from authchain.chain.types import AccountId, Aid, TxHash
from authchain.gateway.deps import NodeDep
from authchain.web import ERROR_RESPONSES

router = APIRouter(tags=["state"], responses=ERROR_RESPONSES)


@router.get("/claims")
async def get_claims(
    node: NodeDep,
    aid: Aid | None = None,
    parent: Aid | None = None,
    owner: AccountId | None = None,
    status: ClaimStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CLAIMS)] = 50,
) -> ClaimList:
    """Registrations as the node's V_auth judged them, newest first: pending, committed (with
    the verifier's statistics) or rejected (with the reason). `aid` keeps one model's claims;
    `parent` the committed claims whose lineage names it (its registered fine-tunes); `owner`
    one account's. These are the answering validator's records, not consensus state."""
    query = ClaimQuery(aid=aid, parent=parent, owner=owner, status=status, limit=limit)
    return await node.claims(query)


@router.get("/disputes/{tx_hash}")
async def get_dispute(tx_hash: TxHash, node: NodeDep) -> DisputePublic:
    """A committed dispute's verdict (consensus state): upheld, so its suspect registration is
    overturned, or failed with V_auth's reason (it then only paid its fee)."""
    return await node.dispute(tx_hash)


@router.get("/validators")
async def get_validators(node: NodeDep) -> ValidatorList:
    """The validator set: genesis' proof-of-authority set, or CometBFT's with voting power."""
    return await node.validators()
