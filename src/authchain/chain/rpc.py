"""The node's RPC server (DESIGN.md §6): what the gateway, CLI and later peers call.

    GET  /health                   {"status": "ok"}
    GET  /status                   NodeStatus: chain id, height, tip, pool size, validators
    POST /txs                      {"tx": hex of canonical bytes} -> 202 accepted | 4xx reason
    POST /txs/batch                {"txs": [hex, ...]} (up to 500) -> per-tx accepted | reason
    GET  /txs/{tx_hash}            TxStatus: queued | committed (+ Merkle proof) | rejected
    GET  /blocks?limit=N           BlockList: the newest N canonical blocks (N <= 100)
    GET  /blocks/latest            BlockPublic
    GET  /blocks/{height_or_hash}  BlockPublic
    GET  /artefacts/{aid}          ArtefactPublic
    GET  /accounts/{account}       AccountPublic (balance, nonce, next_nonce)
    GET  /accounts/{account}/proof StateProofPublic: the entry's proof against the app hash
    GET  /artefacts/{aid}/proof    StateProofPublic (absent entries are proven absent)
    GET  /disputes/{tx_hash}       DisputePublic (a committed dispute's verdict)
    GET  /claims?aid=&parent=&owner=&status=&limit=   ClaimList: registrations as V_auth judged them
    GET  /validators               ValidatorList (genesis' proof-of-authority set)

Errors are `ErrorBody{detail, reason, field}`: 422 for malformed input (naming the field),
400 for a tx CheckTx refuses (reason = the `TxReason`/`PoolReason`), 404 for unknown ids,
503 when the pool is full. Handlers run in the node's event loop, between engine steps, so
they see a consistent tip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request

from authchain import __version__
from authchain.chain import codec, queries
from authchain.chain.config import ChainConfig
from authchain.chain.consensus.engine import ConsensusEngine
from authchain.chain.consensus.pool import PoolReason
from authchain.chain.errors import DecodeError, InvalidField, Rejected
from authchain.chain.schemas import (
    BLOCK_REF_PATTERN,
    MAX_BATCH_BYTES,
    MAX_CLAIMS,
    MAX_TX_BYTES,
    AccountPublic,
    ArtefactPublic,
    BlockList,
    BlockPublic,
    ClaimList,
    ClaimPublic,
    ClaimQuery,
    ClaimStatus,
    DisputePublic,
    NodeStatus,
    StateProofPublic,
    SubmitTx,
    SubmitTxAccepted,
    SubmitTxBatch,
    SubmitTxBatchItem,
    SubmitTxBatchResult,
    TxStatus,
    ValidatorList,
    ValidatorPublic,
    batch_field,
    block_summary,
    block_to_public,
    parse_block_ref,
    tx_to_json,
)
from authchain.chain.types import AccountId, Aid, Block, Transaction, TxHash
from authchain.web import ERROR_RESPONSES, ApiError, BodyLimit, install_error_handlers


@dataclass(frozen=True, slots=True)
class RpcContext:
    """What the RPC handlers read: the engine, the config, and this node's validator id."""

    engine: ConsensusEngine
    config: ChainConfig
    validator: AccountId | None = None


def get_context(request: Request) -> RpcContext:
    context: RpcContext = request.app.state.rpc
    return context


ContextDep = Annotated[RpcContext, Depends(get_context)]

Admit = Callable[[Sequence[Transaction]], Awaitable[list[TxHash | Rejected]]]
"""Admits a batch to this node's pool: each tx's hash, or why it was not admitted."""
RELAYED_HEADER = "x-authchain-relayed"
"""Set on a batch another validator relayed (`chain/abci/relay.py`): not relayed again."""


def get_admit(request: Request) -> Admit:
    """The app's `admit` for this request: a relayed batch's is the one that relays nothing."""
    state = request.app.state
    relayed = request.headers.get(RELAYED_HEADER) is not None
    admit: Admit = state.admit_relayed if relayed else state.admit
    return admit


AdmitDep = Annotated[Admit, Depends(get_admit)]


def decode_submitted_tx(hex_text: str) -> Transaction:
    """A submitted tx's canonical bytes, decoded; ApiError(422) naming what is wrong."""
    data = bytes.fromhex(hex_text.lower().removeprefix("0x"))
    try:
        tx: Transaction = codec.decode(data, Transaction)
    except InvalidField as exc:
        raise ApiError(
            422, "invalid_tx", f"tx.{exc.field}: {exc.message}", f"tx.{exc.field}"
        ) from exc
    except DecodeError as exc:
        raise ApiError(422, "invalid_tx", f"tx: {exc}", "tx") from exc
    return tx


# --- routes -------------------------------------------------------------------------------

MAX_LIST = 100
"""Most items one list request returns."""

node_router = APIRouter(tags=["node"])
submit_router = APIRouter(prefix="/txs", tags=["transactions"], responses=ERROR_RESPONSES)
txs_router = APIRouter(prefix="/txs", tags=["transactions"], responses=ERROR_RESPONSES)
blocks_router = APIRouter(prefix="/blocks", tags=["blocks"], responses=ERROR_RESPONSES)
state_router = APIRouter(tags=["state"], responses=ERROR_RESPONSES)


@node_router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the node's event loop answers."""
    return {"status": "ok"}


@node_router.get("/status")
async def status(ctx: ContextDep) -> NodeStatus:
    """Where this node's chain stands."""
    engine = ctx.engine
    genesis = engine.genesis
    return NodeStatus(
        version=__version__,
        chain_id=genesis.chain_id,
        genesis_hash=engine.genesis_hash,
        height=engine.height,
        tip=engine.tip,
        tip_timestamp_ms=engine.tip_header.timestamp,
        pool_size=len(engine.pool),
        min_fee=genesis.min_fee,
        impersonation=genesis.impersonation,
        validators=[v.account for v in genesis.validators],
        validator=ctx.validator,
        block_time_secs=ctx.config.consensus.block_time_secs,
        floors=dataclasses.asdict(genesis.floors),
    )


@submit_router.post("", status_code=202)
async def submit_tx(body: SubmitTx, admit: AdmitDep) -> SubmitTxAccepted:
    """CheckTx a signed transaction; if it passes it is pooled (and persisted)."""
    tx = decode_submitted_tx(body.tx)
    [result] = await admit([tx])
    if isinstance(result, Rejected):
        code = 503 if result.reason == PoolReason.POOL_FULL else 400
        raise ApiError(code, str(result.reason), result.detail, result.field)
    return SubmitTxAccepted(tx_hash=result)


@submit_router.post("/batch")
async def submit_txs(body: SubmitTxBatch, admit: AdmitDep) -> SubmitTxBatchResult:
    """CheckTx up to 500 signed transactions in one request: signatures are verified in
    parallel and the accepted ones share one durable write. Per-tx answers, in order."""
    items: list[SubmitTxBatchItem | None] = []
    decoded = []
    for i, text in enumerate(body.txs):
        try:
            decoded.append(decode_submitted_tx(text))
            items.append(None)
        except ApiError as exc:
            field = batch_field(i, exc.field)
            items.append(SubmitTxBatchItem(status="rejected", reason=exc.reason,
                                           detail=exc.detail, field=field))  # fmt: skip
    answers = iter(await admit(decoded))
    results = []
    for item in items:
        if item is None:
            answer = next(answers)
            item = (
                SubmitTxBatchItem(status="rejected", reason=str(answer.reason),
                                  detail=answer.detail, field=answer.field)
                if isinstance(answer, Rejected)
                else SubmitTxBatchItem(status="accepted", tx_hash=answer)
            )  # fmt: skip
        results.append(item)
    return SubmitTxBatchResult(
        accepted=sum(r.status == "accepted" for r in results), results=results
    )


@txs_router.get("/{tx_hash}", response_model_exclude_none=True)
async def get_tx(tx_hash: TxHash, ctx: ContextDep) -> TxStatus:
    """Committed (with a Merkle inclusion proof against the block's tx_root), queued or
    rejected (with the reason it was dropped)."""
    engine = ctx.engine
    location = engine.store.get_tx_location(tx_hash)
    if location is not None:
        height, index = location
        block = engine.store.get_block_by_height(height)
        if block is not None:
            block_hash = codec.compute_block_hash(block.header)
            leaves = [codec.compute_tx_hash(tx) for tx in block.txs]
            return TxStatus(
                tx_hash=tx_hash,
                status="committed",
                tx=tx_to_json(block.txs[index]),
                height=block.header.height,
                block_hash=block_hash,
                index=index,
                tx_count=len(leaves),
                tx_root=block.header.tx_root,
                proof=codec.merkle_proof(leaves, index),
            )
    pending = engine.pool.get(tx_hash)
    if pending is not None:
        return TxStatus(tx_hash=tx_hash, status="queued", tx=tx_to_json(pending))
    rejection = engine.get_rejection(tx_hash)
    if rejection is not None:
        return TxStatus(
            tx_hash=tx_hash, status="rejected", reason=rejection.reason, detail=rejection.detail
        )
    raise ApiError(404, "unknown_tx", f"no transaction {tx_hash} is pending, committed or rejected")


def _block_or_404(block: Block | None, what: str) -> BlockPublic:
    if block is None:
        raise ApiError(404, "unknown_block", f"no block {what}")
    return block_to_public(block)


@blocks_router.get("")
async def recent_blocks(
    ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20
) -> BlockList:
    """The newest `limit` canonical blocks, newest first."""
    store = ctx.engine.store
    top = ctx.engine.height
    blocks = (store.get_block_by_height(h) for h in range(top, max(top - limit, -1), -1))
    return BlockList(blocks=[block_summary(b) for b in blocks if b is not None])


@blocks_router.get("/latest")
async def latest_block(ctx: ContextDep) -> BlockPublic:
    """The canonical tip."""
    return _block_or_404(ctx.engine.store.get_block(ctx.engine.tip), "at the tip")


@blocks_router.get("/{ref}")
async def get_block(
    ref: Annotated[str, Path(pattern=BLOCK_REF_PATTERN, description="a height or a block hash")],
    ctx: ContextDep,
) -> BlockPublic:
    """A canonical block by height (decimal), or any stored block by hash (64 hex)."""
    store = ctx.engine.store
    match parse_block_ref(ref):
        case int(height):
            return _block_or_404(store.get_block_by_height(height), f"at height {height}")
        case block_hash:
            return _block_or_404(store.get_block(block_hash), str(block_hash))


@state_router.get("/artefacts/{aid}", tags=["state"])
async def get_artefact_route(aid: Aid, ctx: ContextDep) -> ArtefactPublic:
    """A registered artefact: owner, watermark claim, registration height, use count."""
    artefact = queries.artefact_public(ctx.engine.app, aid)
    if artefact is None:
        raise ApiError(404, "unknown_artefact", f"artefact {aid} is not registered")
    return artefact


@state_router.get("/accounts/{account}", tags=["state"])
async def get_account_route(account: AccountId, ctx: ContextDep) -> AccountPublic:
    """Balance and nonces of any account (an unknown account has balance 0, nonce 0)."""
    return queries.account_public(ctx.engine.app, account)


@state_router.get("/accounts/{account}/proof", tags=["state"])
async def get_account_proof(account: AccountId, ctx: ContextDep) -> StateProofPublic:
    """The account's state entry and its Merkle proof against the committed app hash."""
    return queries.account_proof(ctx.engine.app, account)


@state_router.get("/disputes/{tx_hash}", tags=["state"])
async def get_dispute_route(tx_hash: TxHash, ctx: ContextDep) -> DisputePublic:
    """A committed dispute's verdict: upheld (the suspect is overturned) or failed."""
    dispute = queries.dispute_public(ctx.engine.app, tx_hash)
    if dispute is None:
        raise ApiError(404, "unknown_dispute", f"no committed dispute {tx_hash}")
    return dispute


@state_router.get("/artefacts/{aid}/proof", tags=["state"])
async def get_artefact_proof(aid: Aid, ctx: ContextDep) -> StateProofPublic:
    """The artefact's registration (or its absence) and its proof against the app hash."""
    return queries.artefact_proof(ctx.engine.app, aid)


@state_router.get("/claims", tags=["state"])
async def get_claims(
    ctx: ContextDep,
    aid: Aid | None = None,
    parent: Aid | None = None,
    owner: AccountId | None = None,
    status: ClaimStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CLAIMS)] = 50,
) -> ClaimList:
    """Registrations as this node's V_auth judged them, newest first: pending (in the pool),
    committed (with the verifier's statistics) and rejected (with the reason). `aid` keeps
    the claims on one model, `parent` the committed claims whose lineage names it, `owner`
    one account's."""
    query = ClaimQuery(aid=aid, parent=parent, owner=owner, status=status, limit=limit)
    claims = queries.claims(ctx.engine.app, query)
    return ClaimList(claims=[ClaimPublic.model_validate(c) for c in claims])


@node_router.get("/validators")
async def get_validators(ctx: ContextDep) -> ValidatorList:
    """Genesis' proof-of-authority validators (each with voting power 1)."""
    return ValidatorList(
        height=ctx.engine.height,
        validators=[
            ValidatorPublic(
                account=v.account, scheme=v.scheme.value, public_key=v.public_key.hex(),
                voting_power=1,
            )
            for v in ctx.engine.genesis.validators
        ],
    )  # fmt: skip


def create_rpc_app(context: RpcContext) -> FastAPI:
    """The RPC ASGI app for one node."""
    app = FastAPI(
        title="authchain node RPC",
        version=__version__,
        description="Submit transactions and read the chain of one authchain node.",
    )
    app.state.rpc = context
    app.state.admit = app.state.admit_relayed = context.engine.submit_txs
    install_error_handlers(app)
    for router in (node_router, submit_router, txs_router, blocks_router, state_router):
        app.include_router(router)
    _limit_bodies(app)
    return app


def create_intake_app(admit: Admit, admit_relayed: Admit) -> FastAPI:
    """The tx intake of an app that holds its own pool under CometBFT (`abci.mempool =
    "app"`): the embedded RPC's two submission routes, and `/health`. `admit_relayed` takes
    the batches other validators relay (`RELAYED_HEADER`)."""
    app = FastAPI(
        title="authchain tx intake",
        version=__version__,
        description="Submit transactions to a CometBFT validator whose application holds "
        "the pending txs (CometBFT's mempool is off).",
    )
    app.state.admit, app.state.admit_relayed = admit, admit_relayed
    install_error_handlers(app)
    app.add_api_route("/health", health, methods=["GET"], tags=["node"])
    app.include_router(submit_router)
    _limit_bodies(app)
    return app


def _limit_bodies(app: FastAPI) -> None:
    app.add_middleware(
        BodyLimit,
        max_bytes=2 * MAX_TX_BYTES + 1024,
        path_limits={"/txs/batch": MAX_BATCH_BYTES},
    )
