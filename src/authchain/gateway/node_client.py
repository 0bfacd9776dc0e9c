"""`NodeClient`: the gateway's typed view of a node. Each method is one read or write of the
node's API and returns one of the chain's schemas (`chain/schemas.py`), whichever node answers:

- `HttpNodeClient` (below): an embedded node's HTTP RPC (`chain/rpc.py`);
- `CometNodeClient` (`comet_client.py`): a CometBFT network, through CometBFT's JSON-RPC.

Both fail over across several URLs: a transport error, a timeout or a 502/504 moves on to the
next URL, and the last one that answered is tried first next time.

A node's refusal is one of three errors, whatever the node:
- `NotFound`: no such tx, block or artefact (a `Rejected` whose reason says what: `unknown_tx`);
- `Rejected(reason, detail, field)` (`chain.errors`): the node refused the request, e.g. a
  CheckTx reason, or a bad parameter naming its field;
- `NodeUnavailable`: no node answered.

`api_error` maps them to the gateway's HTTP answer, in this one place: NotFound 404,
NodeUnavailable 503, a full pool 503, malformed input (`invalid_tx`, `invalid_request`) 422,
any other refusal 400.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from authchain.chain.errors import Rejected
from authchain.chain.schemas import (
    AccountPublic,
    ArtefactPublic,
    BlockList,
    BlockPublic,
    ClaimList,
    ClaimQuery,
    DisputePublic,
    NodeStatus,
    StateProofPublic,
    SubmitTx,
    SubmitTxAccepted,
    SubmitTxBatch,
    SubmitTxBatchResult,
    TxStatus,
    ValidatorList,
)
from authchain.chain.types import AccountId, Aid, BlockHash, TxHash
from authchain.web import ApiError, Failover

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

BlockRef = int | BlockHash | None
"""A block by height or hash; None for the tip."""

MALFORMED = frozenset({"invalid_tx", "invalid_request"})
"""Refusals of malformed input (answered 422)."""
FULL = frozenset({"pool_full", "mempool_full"})
"""Refusals for want of room (answered 503: retry later)."""


class NodeUnavailable(Exception):
    """No node answered."""


class NotFound(Rejected):
    """The node has no such thing (the reason says what: `unknown_tx`, `unknown_block`, ...)."""


def api_error(exc: Rejected | NodeUnavailable) -> ApiError:
    """A node error as the gateway's HTTP answer."""
    if isinstance(exc, NodeUnavailable):
        return ApiError(503, "node_unavailable", f"no node answered: {exc}")
    if isinstance(exc, NotFound):
        status = 404
    elif exc.reason in FULL:
        status = 503
    else:
        status = 422 if exc.reason in MALFORMED else 400
    return ApiError(status, exc.reason, exc.detail, exc.field)


class NodeClient(Protocol):
    """What the gateway and the explorer read from and send to a node."""

    async def status(self) -> NodeStatus: ...

    async def account(self, account: AccountId) -> AccountPublic: ...

    async def account_proof(self, account: AccountId) -> StateProofPublic: ...

    async def artefact(self, aid: Aid) -> ArtefactPublic:
        """NotFound(`unknown_artefact`) if it is not registered."""
        ...

    async def artefact_proof(self, aid: Aid) -> StateProofPublic:
        """The record's proof, or the proof that there is none."""
        ...

    async def dispute(self, tx_hash: TxHash) -> DisputePublic:
        """NotFound(`unknown_dispute`) if no such dispute is committed."""
        ...

    async def tx(self, tx_hash: TxHash) -> TxStatus:
        """NotFound(`unknown_tx`) if the node knows nothing of it."""
        ...

    async def submit_tx(self, body: SubmitTx) -> SubmitTxAccepted:
        """Rejected with CheckTx's reason if the pool refuses it."""
        ...

    async def submit_txs(self, body: SubmitTxBatch) -> SubmitTxBatchResult: ...

    async def block(self, ref: BlockRef = None) -> BlockPublic:
        """NotFound(`unknown_block`) if there is none."""
        ...

    async def blocks(self, limit: int) -> BlockList:
        """The newest `limit` canonical blocks, newest first."""
        ...

    async def validators(self) -> ValidatorList: ...

    async def claims(self, query: ClaimQuery) -> ClaimList: ...

    async def aclose(self) -> None: ...


def rejection(body: object, *, missing: bool | None = None, detail: str = "") -> Rejected:
    """A node's `{reason, detail, field}` refusal: NotFound when `missing` (by default, when its
    reason names an unknown thing: `unknown_tx`, `unknown_block`, ...), else Rejected."""
    fields = body if isinstance(body, dict) else {}
    reason = str(fields.get("reason") or "node_error")
    field = fields.get("field")
    if missing is None:
        missing = reason.startswith("unknown_") and reason != "unknown_path"
    kind = NotFound if missing else Rejected
    return kind(
        reason, str(fields.get("detail") or detail), field=None if field is None else str(field)
    )


def refusal(status: int, body: object) -> Rejected | NodeUnavailable:
    """The error an embedded node's non-2xx answer (`ErrorBody`) stands for."""
    refused = rejection(body, missing=status == 404, detail=f"HTTP {status}")
    if status >= 500 and refused.reason not in FULL:
        return NodeUnavailable(f"HTTP {status}: {refused.reason}: {refused.detail}")
    return refused


def parse(kind: type[M], body: Any) -> M:
    """A node's answer as `kind`; NodeUnavailable if it is not one (a node of another
    version, or not a node at all)."""
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        raise NodeUnavailable(f"the node's answer is not a {kind.__name__}: {exc}") from exc


class HttpNodeClient:
    """`NodeClient` over HTTP to one or more embedded nodes' RPC servers."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_secs: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.failover = Failover(urls, "HttpNodeClient")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_secs),
            transport=transport or httpx.AsyncHTTPTransport(retries=1),
        )

    async def status(self) -> NodeStatus:
        return await self._call(NodeStatus, "GET", "/status")

    async def account(self, account: AccountId) -> AccountPublic:
        return await self._call(AccountPublic, "GET", f"/accounts/{account}")

    async def account_proof(self, account: AccountId) -> StateProofPublic:
        return await self._call(StateProofPublic, "GET", f"/accounts/{account}/proof")

    async def artefact(self, aid: Aid) -> ArtefactPublic:
        return await self._call(ArtefactPublic, "GET", f"/artefacts/{aid}")

    async def artefact_proof(self, aid: Aid) -> StateProofPublic:
        return await self._call(StateProofPublic, "GET", f"/artefacts/{aid}/proof")

    async def dispute(self, tx_hash: TxHash) -> DisputePublic:
        return await self._call(DisputePublic, "GET", f"/disputes/{tx_hash}")

    async def tx(self, tx_hash: TxHash) -> TxStatus:
        return await self._call(TxStatus, "GET", f"/txs/{tx_hash}")

    async def submit_tx(self, body: SubmitTx) -> SubmitTxAccepted:
        return await self._call(SubmitTxAccepted, "POST", "/txs", body.model_dump())

    async def submit_txs(self, body: SubmitTxBatch) -> SubmitTxBatchResult:
        return await self._call(SubmitTxBatchResult, "POST", "/txs/batch", body.model_dump())

    async def block(self, ref: BlockRef = None) -> BlockPublic:
        return await self._call(BlockPublic, "GET", f"/blocks/{'latest' if ref is None else ref}")

    async def blocks(self, limit: int) -> BlockList:
        return await self._call(BlockList, "GET", f"/blocks?limit={limit}")

    async def validators(self) -> ValidatorList:
        return await self._call(ValidatorList, "GET", "/validators")

    async def claims(self, query: ClaimQuery) -> ClaimList:
        return await self._call(ClaimList, "GET", query.path())

    async def _call(self, kind: type[M], method: str, path: str, json: Any = None) -> M:
        response = await self._request(method, path, json)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.is_success:
            raise refusal(response.status_code, body)
        return parse(kind, body)

    async def _request(self, method: str, path: str, json: Any) -> httpx.Response:
        problems = []
        for url in self.failover.order():
            try:
                response = await self._client.request(method, f"{url}{path}", json=json)
            except httpx.TransportError as exc:
                problems.append(f"{url}: {type(exc).__name__}")
                continue
            if response.status_code in (502, 504):
                problems.append(f"{url}: HTTP {response.status_code}")
                continue
            self.failover.answered(url)
            return response
        log.warning("no node answered %s %s: %s", method, path, "; ".join(problems))
        raise NodeUnavailable("; ".join(problems))

    async def aclose(self) -> None:
        await self._client.aclose()
