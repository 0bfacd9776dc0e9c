"""`GET /claims` (registrations as V_auth judged them) and `GET /validators`."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query

from authchain.chain.schemas import ClaimList, ValidatorList
from authchain.chain.types import AccountId, Aid
from authchain.gateway.deps import NodeDep
from authchain.gateway.routes.common import relay
from authchain.web import ERROR_RESPONSES

router = APIRouter(tags=["state"], responses=ERROR_RESPONSES)


@router.get("/claims")
async def get_claims(
    node: NodeDep,
    aid: Aid | None = None,
    parent: Aid | None = None,
    owner: AccountId | None = None,
    status: Literal["pending", "committed", "rejected"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ClaimList:
    """Registrations as the node's V_auth judged them, newest first: pending, committed (with
    the verifier's statistics) or rejected (with the reason). `aid` keeps one model's claims;
    `parent` the committed claims whose lineage names it (its registered fine-tunes); `owner`
    one account's. These are the answering validator's records, not consensus state."""
    path = claims_path(aid=aid, parent=parent, owner=owner, status=status, limit=limit)
    return await relay(node, ClaimList, "GET", path)


def claims_path(**params: object) -> str:
    """The node path of a claims query (None values left out)."""
    return "/claims?" + urlencode({k: str(v) for k, v in params.items() if v is not None})


@router.get("/validators")
async def get_validators(node: NodeDep) -> ValidatorList:
    """The validator set: genesis' proof-of-authority set, or CometBFT's with voting power."""
    return await relay(node, ValidatorList, "GET", "/validators")
