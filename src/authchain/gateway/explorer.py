"""The explorer: server-rendered pages of the chain at the gateway's `/`.

Pages are Jinja2 templates rendered from the same node answers the JSON API relays, so the
explorer works the same on a devnet (an embedded node) and on a CometBFT testnet. Two small
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
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from authchain.chain.schemas import ClaimQuery, ClaimStatus
from authchain.chain.types import AccountId, Aid
from authchain.gateway.deps import NodeDep
from authchain.gateway.node_client import NodeClient
from authchain.gateway.routes.common import call_node
from authchain.web import ApiError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static = StaticFiles(directory=HERE / "static")

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


async def fetch(node: NodeClient, path: str) -> Any:
    """The node's answer, or None for a 404 (other errors propagate)."""
    try:
        return await call_node(node, "GET", path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def blocks_per_minute(blocks: list[dict[str, Any]]) -> float | None:
    """The rate of the listed blocks (newest first), from their timestamps."""
    if len(blocks) < 2:
        return None
    span = blocks[0]["timestamp_ms"] - blocks[-1]["timestamp_ms"]
    return None if span <= 0 else (len(blocks) - 1) * 60_000 / span


def verdict_points(claims: list[dict[str, Any]], floors: dict[str, float]) -> dict[str, Any]:
    """The overview chart: each judged claim's two p-values (as -log2) by height, and the
    floors as lines; SVG coordinates in a 600×220 box."""
    width, height, pad = 600, 220, 36
    judged = [c for c in claims if c.get("log2_p_value") is not None]
    trigger_floor = float(floors.get("trigger_p_log2", 64))
    feature_floor = float(floors.get("feature_p_log2", 32))
    top: float = max(
        [trigger_floor * 1.5, *(-float(c["log2_p_value"]) for c in judged)]
        + [-float(c["log2_feat_p_value"]) for c in judged if c.get("log2_feat_p_value") is not None]
    )
    heights = [int(c["height"]) for c in judged] or [0, 1]
    lo, hi = min(heights), max(heights)
    hi = hi if hi > lo else lo + 1

    def x(h: float) -> float:
        return round(pad + (h - lo) / (hi - lo) * (width - 2 * pad), 1)

    def y(bits: float) -> float:
        return round(height - pad - min(bits, top) / top * (height - 2 * pad), 1)

    points = []
    for c in judged:
        for factor, key in (("trigger", "log2_p_value"), ("signature", "log2_feat_p_value")):
            if c.get(key) is not None:
                points.append(
                    {
                        "x": x(c["height"]), "y": y(-c[key]), "factor": factor,
                        "status": c["status"], "aid": c["aid"], "tx_hash": c["tx_hash"],
                        "label": f"{factor} p = {pow2(c[key])} ({c['status']} at {c['height']})",
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
    status, blocks, pending, committed, rejected = await asyncio.gather(
        call_node(node, "GET", "/status"),
        call_node(node, "GET", f"/blocks?limit={LIVE_BLOCKS}"),
        *(
            call_node(node, "GET", ClaimQuery(status=kind, limit=limit).path())
            for kind, limit in live
        ),
    )  # fmt: skip
    judged = committed["claims"] + rejected["claims"]
    return {
        "status": status,
        "blocks": blocks["blocks"],
        "rate": blocks_per_minute(blocks["blocks"]),
        "pending": pending["claims"],
        "rejected": rejected["claims"][:LIVE_CLAIMS],
        "committed": committed["claims"][:LIVE_CLAIMS],
        "chart": verdict_points(judged, status.get("floors", {})),
    }


async def lineage(node: NodeClient, aid: str, parents: list[str]) -> dict[str, Any]:
    """The model's ancestors (each with its own parents) and its registered fine-tunes (each
    with theirs): `LINEAGE_DEPTH` generations each way, `LINEAGE_NODES` models at most
    (`truncated` says some were left out)."""
    budget = [LINEAGE_NODES]

    def take() -> bool:
        budget[0] -= 1
        return budget[0] >= 0

    async def ancestors(aids: list[str], depth: int) -> list[dict[str, Any]]:
        out = []
        for parent in aids:
            if not take():
                break
            artefact = await fetch(node, f"/artefacts/{parent}") if depth > 1 else None
            above = artefact["parents"] if artefact else []
            out.append({"aid": parent, "parents": await ancestors(above, depth - 1)})
        return out

    async def descendants(of: str, depth: int) -> list[dict[str, Any]]:
        if not depth or budget[0] < 0:
            return []
        path = ClaimQuery(
            parent=Aid.from_hex(of), status="committed", limit=min(budget[0] + 1, 100)
        ).path()
        out = []
        for c in (await call_node(node, "GET", path))["claims"]:
            if not take():
                break
            children = await descendants(c["aid"], depth - 1)
            out.append({"aid": c["aid"], "height": c["height"], "children": children})
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


def hex_id(value: str, what: str) -> str:
    """`value` as lower-case hex without 0x; a 422 page saying it is not `what` otherwise."""
    if not HEX64.match(value):
        raise ApiError(422, "invalid_request", f"{value!r} is not {what} (64 hex digits)")
    return value.lower().removeprefix("0x")


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, node: NodeDep) -> Response:
    return page(request, "overview.html", await overview_data(node))


@router.get("/fragments/overview", response_class=HTMLResponse)
async def overview_fragment(request: Request, node: NodeDep) -> Response:
    return page(request, "overview_live.html", await overview_data(node))


@router.get("/block/{ref}", response_class=HTMLResponse)
async def block_page(request: Request, ref: str, node: NodeDep) -> Response:
    if not (HEIGHT.match(ref) or HEX64.match(ref)):
        return not_found(request, f"{ref!r} is neither a height nor a block hash", 422)
    block = await fetch(node, f"/blocks/{ref.lower().removeprefix('0x')}")
    if block is None:
        return not_found(request, f"no block {ref}")
    return page(request, "block.html", {"block": block})


@router.get("/tx/{tx_hash}", response_class=HTMLResponse)
async def tx_page(request: Request, tx_hash: str, node: NodeDep) -> Response:
    status = await fetch(node, f"/txs/{hex_id(tx_hash, 'a transaction hash')}")
    if status is None:
        return not_found(request, f"no transaction {tx_hash} is pending, committed or rejected")
    return page(request, "tx.html", {"s": status})


@router.get("/model/{aid}", response_class=HTMLResponse)
async def model_page(request: Request, aid: str, node: NodeDep) -> Response:
    aid = hex_id(aid, "an artefact id")
    artefact = await fetch(node, f"/artefacts/{aid}")
    claims = (await call_node(node, "GET", ClaimQuery(aid=Aid.from_hex(aid)).path()))["claims"]
    if artefact is None and not claims:
        return not_found(request, f"no model {aid} is registered, pending or rejected")
    status = await call_node(node, "GET", "/status")
    committed = next((c for c in claims if c["status"] == "committed"), None)
    tree = await lineage(node, aid, artefact["parents"] if artefact else [])
    return page(
        request,
        "model.html",
        {
            "aid": aid, "artefact": artefact, "verdict": committed, "floors": status["floors"],
            "others": [c for c in claims if c is not committed], "lineage": tree,
        },
    )  # fmt: skip


@router.get("/account/{account}", response_class=HTMLResponse)
async def account_page(request: Request, account: str, node: NodeDep) -> Response:
    account = hex_id(account, "an account id")
    state = await call_node(node, "GET", f"/accounts/{account}")
    claims = (await call_node(node, "GET", ClaimQuery(owner=AccountId.from_hex(account)).path()))[
        "claims"
    ]
    return page(request, "account.html", {"a": state, "claims": claims})


@router.get("/validator-set", response_class=HTMLResponse)
async def validators_page(request: Request, node: NodeDep) -> Response:
    found = await call_node(node, "GET", "/validators")
    blocks = (await call_node(node, "GET", f"/blocks?limit={LIVE_BLOCKS}"))["blocks"]
    proposed: dict[str, int] = {}
    for b in blocks:
        proposed[b["proposer"]] = proposed.get(b["proposer"], 0) + 1
    return page(request, "validators.html", {"v": found, "proposed": proposed, "n": len(blocks)})


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
    for path, target in (
        (f"/txs/{ref}", "tx"), (f"/blocks/{ref}", "block"), (f"/artefacts/{ref}", "model"),
    ):  # fmt: skip
        if await fetch(node, path) is not None:
            return RedirectResponse(f"/{target}/{ref}", status_code=303)
    if (await call_node(node, "GET", ClaimQuery(aid=Aid.from_hex(ref), limit=1).path()))["claims"]:
        return RedirectResponse(f"/model/{ref}", status_code=303)
    account = await call_node(node, "GET", f"/accounts/{ref}")
    if account["nonce"] or account["balance"] or account["next_nonce"]:
        return RedirectResponse(f"/account/{ref}", status_code=303)
    return not_found(request, f"no transaction, block, model or account {ref} is known")


__all__ = ["router", "static"]
