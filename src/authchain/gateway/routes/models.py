"""`POST /models/register` (seed) and `GET /models/{aid}`.

The seed's register body carries no signature, and no evidence strength: `trigger_count`,
`signature_bits` and `num_classes` are optional and default to what `authchain model train`
embeds (100, 2048, 10). The gateway turns it into an unsigned
`TxRegisterModel` only when the chain's genesis enables devnet impersonation; it fills in the
owner's next nonce and the chain's minimum fee. Elsewhere the answer is 401 with how to sign.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from authchain.chain.consensus.pool import PoolReason
from authchain.chain.errors import Rejected
from authchain.chain.metrics.prometheus import metric_reason
from authchain.chain.schemas import ArtefactPublic, StateProofPublic, SubmitTx, encode_tx_hex
from authchain.chain.state import TxReason
from authchain.chain.types import (
    AccountId,
    Aid,
    EvidenceHash,
    EvidenceRef,
    TxRegisterModel,
    WmProfile,
)
from authchain.chain.types.tx import MAX_SPARES
from authchain.gateway.deps import MetricsDep, NodeDep
from authchain.gateway.node_client import NodeUnavailable, api_error
from authchain.web import ERROR_RESPONSES, ApiError
from authchain.wire import SKETCH_BYTES, WmProfileJson

router = APIRouter(prefix="/models", tags=["models"], responses=ERROR_RESPONSES)

SIGN_HINT = (
    "this chain does not accept unsigned transactions (genesis.impersonation is off): sign the "
    "registration with `authchain register --key KEYFILE ...`, which posts it to /txs"
)
NONCE_RETRIES = 3
OWNER_LOCK_STRIPES = 64
_owner_locks = [asyncio.Lock() for _ in range(OWNER_LOCK_STRIPES)]
"""One nonce at a time per owner in this gateway: a fixed set of locks, an owner's by hash."""
REGISTER_RESULTS = frozenset(
    {*TxReason, *PoolReason, "invalid_tx", "node_unavailable", "node_error", "unknown_path"}
)


class RegisterModelRequest(BaseModel):
    """The seed's `POST /models/register` body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    owner_account_hex: AccountId
    aid_hex: Aid
    scheme_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    evidence_hash_hex: EvidenceHash
    wm_profile: WmProfileJson
    trigger_count: int = Field(
        100, ge=1, le=4096, description="K of the evidence (not in the seed)"
    )
    signature_bits: int = Field(
        2048, ge=1, le=4096, description="n of the evidence (not in the seed)"
    )
    num_classes: int = Field(10, ge=2, le=4096, description="C of the model (not in the seed)")
    spare_hashes_hex: list[EvidenceHash] = Field(
        default_factory=list, max_length=MAX_SPARES,
        description="BLAKE3 of each spare evidence file (not in the seed; never uploaded)",
    )  # fmt: skip
    sketch_hex: str = Field(
        "", pattern=rf"^([0-9a-fA-F]{{{2 * SKETCH_BYTES}}})?$",
        description="the artefact's function sketch in hex (not in the seed; the ML "
        "service's GET /artefacts/{aid}/sketch gives it). V_auth refuses a registration "
        "without its own (sketch_mismatch)",
    )  # fmt: skip


class RegisterQueued(BaseModel):
    """The seed's answer, plus the tx hash to follow at `GET /txs/{tx_hash}`."""

    status: Literal["queued"] = "queued"
    aid: Aid
    tx_hash: str


@router.post("/register", status_code=202)
async def register_model(
    body: RegisterModelRequest, node: NodeDep, metrics: MetricsDep
) -> RegisterQueued:
    """Queue an unsigned registration (devnet impersonation only)."""
    status = await node.status()
    if not status.impersonation:
        metrics.registrations.labels(result="signature_required").inc()
        raise ApiError(401, "signature_required", SIGN_HINT)
    p = body.wm_profile
    evidence = EvidenceRef(
        body.scheme_id,
        body.evidence_hash_hex,
        WmProfile(p.tau_input, p.tau_feat, p.logit_band_low, p.logit_band_high),
        trigger_count=body.trigger_count,
        signature_bits=body.signature_bits,
        num_classes=body.num_classes,
        spares=tuple(body.spare_hashes_hex),
        sketch=bytes.fromhex(body.sketch_hex),
    )
    owner = str(body.owner_account_hex)
    async with _owner_locks[hash(owner) % OWNER_LOCK_STRIPES]:
        for attempt in range(NONCE_RETRIES):
            account = await node.account(body.owner_account_hex)
            tx = TxRegisterModel(
                body.owner_account_hex,
                body.aid_hex,
                evidence,
                fee=status.min_fee,
                nonce=account.next_nonce,
            )
            try:
                answer = await node.submit_tx(SubmitTx(tx=encode_tx_hex(tx)))
            except (Rejected, NodeUnavailable) as refused:
                exc = api_error(refused)
                if exc.reason == "nonce_taken" and attempt + 1 < NONCE_RETRIES:
                    continue  # another gateway used that nonce: take the next one
                metrics.registrations.labels(
                    result=metric_reason(exc.reason, REGISTER_RESULTS)
                ).inc()
                if exc.field and exc.field.startswith("evidence."):  # name the seed body's field
                    exc.field = exc.field.removeprefix("evidence.")
                    exc.detail = exc.detail.removeprefix("evidence.")
                raise exc from refused
            metrics.registrations.labels(result="queued").inc()
            return RegisterQueued(aid=body.aid_hex, tx_hash=str(answer.tx_hash))
    raise ApiError(409, "nonce_taken", "could not find a free nonce; retry")


@router.get("/{aid}/proof")
async def get_model_proof(aid: Aid, node: NodeDep) -> StateProofPublic:
    """The model's registration record with its Merkle proof against the app hash (or a proof
    that no such aid is registered)."""
    return await node.artefact_proof(aid)


@router.get("/{aid}")
async def get_model(aid: Aid, node: NodeDep) -> ArtefactPublic:
    """A registered model: owner, watermark claim, registration height, uses."""
    return await node.artefact(aid)
