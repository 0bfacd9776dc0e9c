"""The explorer: server-rendered pages of the chain at the gateway's `/`.

Pages are Jinja2 templates rendered from the same typed node answers the JSON API relays
(`NodeClient`, the schemas of `chain/schemas.py`), so the explorer works the same on a devnet
(an embedded node) and on a CometBFT testnet. Two small
scripts run in the browser, both served from here (no network beyond the gateway):

- `explorer.js` refreshes the overview's live panel (`/fragments/overview`) every 2 seconds;
- `proof.js` checks a committed tx's inclusion proof against its block header: BLAKE3 or
  SHA-256 from the vendored `@noble/hashes` bundle (`static/vendor/`).

    GET /                      overview: height, blocks per minute, recent blocks, pending,
                               rejected and committed registrations, verifier results chart
    GET /block/{height|hash}   header fields, txs, proposer
    GET /tx/{hash}             status; the inclusion proof checked in the browser
    GET /model/{aid}           owner, claim, p-values against the floors, lineage, claims
    GET /account/{id}          balance, nonces, models
    GET /validator-set         the validator set (CometBFT's, with voting power)
    GET /search?q=             a height, or a tx / block / model / account hash
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from authchain.chain.errors import Rejected
from authchain.chain.schemas import (
    ArtefactPublic,
    BlockSummary,
    ClaimPublic,
    ClaimQuery,
    ClaimStatus,
    DisputePublic,
)
from authchain.chain.types import AccountId, Aid, BlockHash, TxHash
from authchain.gateway.deps import NodeDep
from authchain.gateway.node_client import NodeClient, NodeUnavailable, NotFound, api_error
from authchain.web import ApiError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static = StaticFiles(directory=HERE / "static")

T = TypeVar("T")
Id = TypeVar("Id", Aid, AccountId, TxHash, BlockHash)

HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
HEIGHT = re.compile(r"^[0-9]{1,19}$")
LIVE_BLOCKS = 20
LIVE_CLAIMS = 10
"""Rows in each of the overview's claim tables."""
CHART_CLAIMS = 100
"""The newest committed and the newest rejected claims the verifier chart plots (each)."""
LINEAGE_DEPTH = 6
"""Generations of ancestors and of fine-tunes the model page follows."""
LINEAGE_NODES = 60
"""Most models one lineage tree shows (each costs the page a node request); below the 100
that one `/claims` answer holds, so asking for one more tells whether the tree was cut."""
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


# --- formatting (Jinja filters) ---------------------------------------------------------------


def short(value: object, keep: int = 8) -> str:
    """A hash cut to its first and last `keep // 2` hex digits."""
    text = str(value)
    return text if len(text) <= keep + 2 else f"{text[: keep // 2 + 2]}…{text[-keep // 2 :]}"


def when(millis: object) -> str:
    """Unix milliseconds as UTC time."""
    if not isinstance(millis, int | float):
        return "—"
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pow2(log2: object) -> str:
    """A log2 p-value as 2^x."""
    if not isinstance(log2, int | float) or not math.isfinite(log2):
        return "—"
    return f"2^{log2:.1f}"


templates.env.filters.update(short=short, when=when, pow2=pow2)


# --- reading the node ---------------------------------------------------------------------------


async def fetch(read: Coroutine[Any, Any, T]) -> T | None:
    """The node's answer, or None if it has no such thing (other errors propagate)."""
    try:
        return await read
    except NotFound:
        return None


def blocks_per_minute(blocks: list[BlockSummary]) -> float | None:
    """The rate of the listed blocks (newest first), from their timestamps."""
    if len(blocks) < 2:
        return None
    span = blocks[0].timestamp_ms - blocks[-1].timestamp_ms
    return None if span <= 0 else (len(blocks) - 1) * 60_000 / span


def verdict_points(claims: list[ClaimPublic], floors: dict[str, float]) -> dict[str, Any]:
    """The overview chart: each judged claim's two p-values (as -log2) by height, and the
    floors as lines; SVG coordinates in a 600×220 box."""
    width, height, pad = 600, 220, 36
    judged = [c for c in claims if c.log2_p_value is not None]
    trigger_floor = float(floors.get("trigger_p_log2", 64))
    feature_floor = float(floors.get("feature_p_log2", 32))
    top: float = max(
        [trigger_floor * 1.5]
        + [-c.log2_p_value for c in judged if c.log2_p_value is not None]
        + [-c.log2_feat_p_value for c in judged if c.log2_feat_p_value is not None]
    )
    heights = [c.height for c in judged] or [0, 1]
    lo, hi = min(heights), max(heights)
    hi = hi if hi > lo else lo + 1

    def x(h: float) -> float:
        return round(pad + (h - lo) / (hi - lo) * (width - 2 * pad), 1)

    def y(bits: float) -> float:
        return round(height - pad - min(bits, top) / top * (height - 2 * pad), 1)

    points = []
    for c in judged:
        for factor, log2 in (("trigger", c.log2_p_value), ("signature", c.log2_feat_p_value)):
            if log2 is not None:
                points.append(
                    {
                        "x": x(c.height), "y": y(-log2), "factor": factor,
                        "status": c.status, "aid": str(c.aid), "tx_hash": str(c.tx_hash),
                        "label": f"{factor} p = {pow2(log2)} ({c.status} at {c.height})",
                    }
                )  # fmt: skip
    return {
        "width": width, "height": height, "pad": pad, "points": points,
        "floors": [
            {"y": y(trigger_floor), "label": f"trigger floor 2^-{trigger_floor:g}"},
            {"y": y(feature_floor), "label": f"signature floor 2^-{feature_floor:g}"},
        ],
        "top": round(top), "lo": lo, "hi": hi,
    }  # fmt: skip


async def overview_data(node: NodeClient) -> dict[str, Any]:
    """The live panel's data: five node reads, made together. Each kind of claim is asked for
    on its own, so a full pool of pending registrations cannot push the judged ones (and the
    chart) off the page."""
    live: list[tuple[ClaimStatus, int]] = [
        ("pending", LIVE_CLAIMS), ("committed", CHART_CLAIMS), ("rejected", CHART_CLAIMS),
    ]  # fmt: skip
    status, blocks, (pending, committed, rejected) = await asyncio.gather(
        node.status(),
        node.blocks(LIVE_BLOCKS),
        asyncio.gather(*(node.claims(ClaimQuery(status=k, limit=n)) for k, n in live)),
    )
    return {
        "status": status,
        "blocks": blocks.blocks,
        "rate": blocks_per_minute(blocks.blocks),
        "pending": pending.claims,
        "rejected": rejected.claims[:LIVE_CLAIMS],
        "committed": committed.claims[:LIVE_CLAIMS],
        "chart": verdict_points(committed.claims + rejected.claims, status.floors),
    }


async def lineage(node: NodeClient, aid: Aid, parents: list[Aid]) -> dict[str, Any]:
    """The model's ancestors (each with its own parents) and its registered fine-tunes (each
    with theirs): `LINEAGE_DEPTH` generations each way, `LINEAGE_NODES` models at most
    (`truncated` says some were left out)."""
    budget = [LINEAGE_NODES]

    def take() -> bool:
        budget[0] -= 1
        return budget[0] >= 0

    async def ancestors(aids: list[Aid], depth: int) -> list[dict[str, Any]]:
        out = []
        for parent in aids:
            if not take():
                break
            artefact = await fetch(node.artefact(parent)) if depth > 1 else None
            above = artefact.parents if artefact else []
            out.append({"aid": parent, "parents": await ancestors(above, depth - 1)})
        return out

    async def descendants(of: Aid, depth: int) -> list[dict[str, Any]]:
        if not depth or budget[0] < 0:
            return []
        query = ClaimQuery(parent=of, status="committed", limit=min(budget[0] + 1, 100))
        out = []
        for c in (await node.claims(query)).claims:
            if not take():
                break
            children = await descendants(c.aid, depth - 1)
            out.append({"aid": c.aid, "height": c.height, "children": children})
        return out

    return {
        "ancestors": await ancestors(parents, LINEAGE_DEPTH),
        "children": await descendants(aid, LINEAGE_DEPTH),
        "truncated": budget[0] < 0,
    }


# --- pages ------------------------------------------------------------------------------------


class HtmlRoute(APIRoute):
    """An explorer route: a node error (unavailable, refused) becomes an HTML error page with
    the same status, not the API's JSON body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def html_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except (Rejected, NodeUnavailable) as refused:
                exc = api_error(refused)
                return not_found(request, f"{exc.reason}: {exc.detail}", exc.status)
            except ApiError as exc:
                return not_found(request, f"{exc.reason}: {exc.detail}", exc.status)

        return html_errors


router = APIRouter(include_in_schema=False, route_class=HtmlRoute)


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    return response


def not_found(request: Request, what: str, status: int = 404) -> Response:
    return page(request, "not_found.html", {"what": what}, status)


def hex_id(kind: type[Id], value: str, what: str) -> Id:
    """`value` as the id `kind`; a 422 page saying it is not `what` otherwise."""
    if not HEX64.match(value):
        raise ApiError(422, "invalid_request", f"{value!r} is not {what} (64 hex digits)")
    return kind.from_hex(value.lower().removeprefix("0x"))


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, node: NodeDep) -> Response:
    return page(request, "overview.html", await overview_data(node))


@router.get("/fragments/overview", response_class=HTMLResponse)
async def overview_fragment(request: Request, node: NodeDep) -> Response:
    return page(request, "overview_live.html", await overview_data(node))


@router.get("/block/{ref}", response_class=HTMLResponse)
async def block_page(request: Request, ref: str, node: NodeDep) -> Response:
    if HEIGHT.match(ref):
        block = await fetch(node.block(int(ref)))
    elif HEX64.match(ref):
        block = await fetch(node.block(hex_id(BlockHash, ref, "a block hash")))
    else:
        return not_found(request, f"{ref!r} is neither a height nor a block hash", 422)
    if block is None:
        return not_found(request, f"no block {ref}")
    return page(request, "block.html", {"block": block})


@router.get("/tx/{tx_hash}", response_class=HTMLResponse)
async def tx_page(request: Request, tx_hash: str, node: NodeDep) -> Response:
    status = await fetch(node.tx(hex_id(TxHash, tx_hash, "a transaction hash")))
    if status is None:
        return not_found(request, f"no transaction {tx_hash} is pending, committed or rejected")
    proof = status.model_dump(mode="json", exclude_none=True)  # what GET /txs/{hash} answers
    return page(request, "tx.html", {"s": status, "proof": proof})


OVERTURNED_SHOWN = 10
"""Copies overturned by a model's owner whose disputes its page shows."""


async def model_disputes(
    node: NodeClient, artefact: ArtefactPublic | None
) -> tuple[DisputePublic | None, list[DisputePublic]]:
    """The dispute that overturned this model, if one did, and those its owner won against
    copies of it (the first `OVERTURNED_SHOWN`)."""
    if artefact is None:
        return None, []
    lost = None
    if artefact.overturned_by is not None:
        lost = await fetch(node.dispute(artefact.overturned_by.dispute_tx))
    copies = await asyncio.gather(
        *(fetch(node.artefact(c)) for c in artefact.overturned[:OVERTURNED_SHOWN])
    )
    won = await asyncio.gather(
        *(fetch(node.dispute(c.overturned_by.dispute_tx)) for c in copies
          if c is not None and c.overturned_by is not None)
    )  # fmt: skip
    return lost, [d for d in won if d is not None]


@router.get("/model/{aid}", response_class=HTMLResponse)
async def model_page(request: Request, aid: str, node: NodeDep) -> Response:
    model = hex_id(Aid, aid, "an artefact id")
    artefact = await fetch(node.artefact(model))
    claims = (await node.claims(ClaimQuery(aid=model))).claims
    if artefact is None and not claims:
        return not_found(request, f"no model {model} is registered, pending or rejected")
    status = await node.status()
    committed = next((c for c in claims if c.status == "committed"), None)
    tree = await lineage(node, model, artefact.parents if artefact else [])
    lost, won = await model_disputes(node, artefact)
    return page(
        request,
        "model.html",
        {
            "aid": str(model), "artefact": artefact, "verdict": committed,
            "floors": status.floors, "others": [c for c in claims if c is not committed],
            "lineage": tree, "lost": lost, "won": won,
        },
    )  # fmt: skip


@router.get("/account/{account}", response_class=HTMLResponse)
async def account_page(request: Request, account: str, node: NodeDep) -> Response:
    owner = hex_id(AccountId, account, "an account id")
    state, claims = await asyncio.gather(node.account(owner), node.claims(ClaimQuery(owner=owner)))
    return page(request, "account.html", {"a": state, "claims": claims.claims})


@router.get("/validator-set", response_class=HTMLResponse)
async def validators_page(request: Request, node: NodeDep) -> Response:
    found, recent = await asyncio.gather(node.validators(), node.blocks(LIVE_BLOCKS))
    proposed: dict[str, int] = {}
    for b in recent.blocks:
        proposed[b.proposer] = proposed.get(b.proposer, 0) + 1
    return page(
        request, "validators.html", {"v": found, "proposed": proposed, "n": len(recent.blocks)}
    )


@router.get("/search", response_class=HTMLResponse)
async def search(request: Request, node: NodeDep, q: str = "") -> Response:
    """A height goes to its block; a 64-hex hash to the tx, block, model or account it names
    (tried in that order)."""
    q = q.strip()
    if HEIGHT.match(q):
        return RedirectResponse(f"/block/{int(q)}", status_code=303)
    if not HEX64.match(q):
        return not_found(request, f"search for {q!r}: enter a height or a 64-hex hash", 422)
    ref = q.lower().removeprefix("0x")
    if await fetch(node.tx(TxHash.from_hex(ref))) is not None:
        return RedirectResponse(f"/tx/{ref}", status_code=303)
    if await fetch(node.block(BlockHash.from_hex(ref))) is not None:
        return RedirectResponse(f"/block/{ref}", status_code=303)
    aid = Aid.from_hex(ref)
    if await fetch(node.artefact(aid)) is not None:
        return RedirectResponse(f"/model/{ref}", status_code=303)
    if (await node.claims(ClaimQuery(aid=aid, limit=1))).claims:
        return RedirectResponse(f"/model/{ref}", status_code=303)
    account = await node.account(AccountId.from_hex(ref))
    if account.nonce or account.balance or account.next_nonce:
        return RedirectResponse(f"/account/{ref}", status_code=303)
    return not_found(request, f"no transaction, block, model or account {ref} is known")


__all__ = ["router", "static"]
