"""`CometNodeClient`: the gateway's `NodeClient` on a CometBFT network.

Each method answers with the same schema as an embedded node's RPC, from CometBFT's own RPC
(JSON-RPC 2.0 over HTTP), so that standard CometBFT tooling sees exactly the chain the gateway
shows:

    submit_tx         broadcast_tx_sync (CheckTx's code and reason come back), or where the
                      apps hold the pending txs (`abci.mempool = "app"`), POST /txs to an
                      app's intake (`txs_urls`, with failover)
    submit_txs        broadcast_tx_sync for each, 8 in flight; or POST /txs/batch to an intake
    tx                abci_query /txs/{hash}; when committed, `block` for its bytes and
                      `tx?prove=true` for the inclusion proof against data_hash
    blocks            blockchain (block metas), newest first
    block             block / block_by_hash, the txs decoded
    account(_proof)   abci_query /accounts/{id}[/proof]
    artefact(_proof)  abci_query /artefacts/{aid}[/proof]
    claims            abci_query /claims?... (this validator's V_auth records)
    validators        validators (the account is BLAKE3 of the Ed25519 key)
    status            status + abci_query /status (+ num_unconfirmed_txs: the pool's
                      size, where CometBFT's mempool holds the pending txs)

authchain names txs by BLAKE3 of their canonical bytes; CometBFT by SHA-256 of the same bytes.
The application indexes the first, and the second is computed from the bytes.
Several RPC URLs give failover, as with `HttpNodeClient`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from authchain import __version__
from authchain.chain import codec
from authchain.chain.errors import ChainError, Rejected
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
    SubmitTxBatchItem,
    SubmitTxBatchResult,
    TxStatus,
    ValidatorList,
    batch_field,
    tx_to_json,
)
from authchain.chain.types import AccountId, Aid, Transaction, TxHash, get_signer
from authchain.gateway.node_client import (
    BlockRef,
    HttpNodeClient,
    NodeUnavailable,
    NotFound,
    parse,
    rejection,
)
from authchain.web import Failover

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class RpcError(Rejected):
    """CometBFT answered with a JSON-RPC error (`node_error`)."""

    def __init__(self, message: str, data: str) -> None:
        super().__init__("node_error", f"{message}: {data}")
        self.data = data


BATCH_CONCURRENCY = 8
"""`broadcast_tx_sync` calls in flight for one `submit_txs`."""


class CometNodeClient:
    """`NodeClient` over one or more CometBFT RPC endpoints."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_secs: float,
        txs_urls: Sequence[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.failover = Failover(urls, "CometNodeClient")
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_secs), transport=transport)
        self._intake = (
            HttpNodeClient(txs_urls, timeout_secs=timeout_secs, transport=transport)
            if txs_urls
            else None
        )
        """The apps' tx intakes, where txs go when the apps hold them (`abci.mempool =
        "app"`: CometBFT's mempool is off and refuses `broadcast_tx_*`)."""

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._intake is not None:
            await self._intake.aclose()

    # --- CometBFT's JSON-RPC, and the application's ABCI queries ---------------------------

    async def call(self, method: str, **params: Any) -> Any:
        """One JSON-RPC call's `result`; RpcError for an error answer."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        problems = []
        for url in self.failover.order():
            try:
                response = await self._client.post(url, json=body)
            except httpx.TransportError as exc:
                problems.append(f"{url}: {type(exc).__name__}")
                continue
            try:
                answer = response.json()
            except ValueError:
                problems.append(f"{url}: HTTP {response.status_code}, not JSON")
                continue
            self.failover.answered(url)
            if "error" in answer:
                err = answer["error"]
                raise RpcError(str(err.get("message", "")), str(err.get("data", "")))
            return answer["result"]
        log.warning("no CometBFT RPC answered %s: %s", method, "; ".join(problems))
        raise NodeUnavailable("; ".join(problems))

    async def query(self, path: str) -> tuple[int, Any]:
        """abci_query `path`: (code, decoded JSON value)."""
        result = await self.call("abci_query", path=path, data="", height="0", prove=False)
        response = result["response"]
        value = base64.b64decode(response.get("value") or "")
        return int(response.get("code", 0)), json.loads(value) if value else {}

    async def _read(self, kind: type[M], path: str) -> M:
        """The application's answer to `path` as `kind`; its refusal as NotFound/Rejected."""
        code, value = await self.query(path)
        if code:
            raise rejection(value)
        return parse(kind, value)

    # --- NodeClient ------------------------------------------------------------------------

    async def account(self, account: AccountId) -> AccountPublic:
        return await self._read(AccountPublic, f"/accounts/{account}")

    async def account_proof(self, account: AccountId) -> StateProofPublic:
        return await self._read(StateProofPublic, f"/accounts/{account}/proof")

    async def artefact(self, aid: Aid) -> ArtefactPublic:
        return await self._read(ArtefactPublic, f"/artefacts/{aid}")

    async def artefact_proof(self, aid: Aid) -> StateProofPublic:
        return await self._read(StateProofPublic, f"/artefacts/{aid}/proof")

    async def dispute(self, tx_hash: TxHash) -> DisputePublic:
        return await self._read(DisputePublic, f"/disputes/{tx_hash}")

    async def claims(self, query: ClaimQuery) -> ClaimList:
        return await self._read(ClaimList, query.path())

    async def submit_tx(self, body: SubmitTx) -> SubmitTxAccepted:
        if self._intake is not None:
            return await self._intake.submit_tx(body)
        raw = bytes.fromhex(body.tx.lower().removeprefix("0x"))
        try:
            tx: Transaction = codec.decode(raw, Transaction)
        except ChainError as exc:
            raise Rejected("invalid_tx", f"tx: {exc}", field="tx") from exc
        try:
            result = await self.call("broadcast_tx_sync", tx=base64.b64encode(raw).decode())
        except RpcError as exc:
            if "cache" in exc.data:
                raise Rejected("duplicate", "this tx is already pending") from exc
            if "full" in exc.data:
                raise Rejected("pool_full", exc.data) from exc
            raise
        if int(result.get("code", 0)):
            try:
                refused = json.loads(result.get("log") or "{}")
            except ValueError:
                refused = {"reason": "check_tx_failed", "detail": result.get("log", "")}
            raise rejection(refused)
        return SubmitTxAccepted(tx_hash=codec.compute_tx_hash(tx))

    async def submit_txs(self, body: SubmitTxBatch) -> SubmitTxBatchResult:
        """CometBFT takes txs one at a time: `broadcast_tx_sync` each, 8 in flight, but each
        sender's in the batch's order, one after the other (its apps admit only a sender's
        next nonce: `nonce_gap`); the same per-tx answers, in order, as the node's
        `POST /txs/batch`. Where the apps hold the txs, the batch goes to an intake whole."""
        if self._intake is not None:
            return await self._intake.submit_txs(body)
        gate = asyncio.Semaphore(BATCH_CONCURRENCY)
        results: list[SubmitTxBatchItem | None] = [None] * len(body.txs)
        by_sender: dict[bytes, list[int]] = {}
        for i, tx_hex in enumerate(body.txs):
            try:
                raw = bytes.fromhex(tx_hex.lower().removeprefix("0x"))
                signer = bytes(get_signer(codec.decode(raw, Transaction)))
            except (ChainError, ValueError):
                signer = i.to_bytes(8, "big")  # undecodable: alone; submit_tx names why
            by_sender.setdefault(signer, []).append(i)

        async def one(i: int) -> None:
            try:
                async with gate:
                    accepted = await self.submit_tx(SubmitTx(tx=body.txs[i]))
            except Rejected as exc:
                results[i] = SubmitTxBatchItem(
                    status="rejected", reason=exc.reason, detail=exc.detail,
                    field=batch_field(i, exc.field),
                )  # fmt: skip
                return
            results[i] = SubmitTxBatchItem(status="accepted", tx_hash=accepted.tx_hash)

        async def in_order(indices: list[int]) -> None:
            for i in indices:
                await one(i)

        await asyncio.gather(*(in_order(indices) for indices in by_sender.values()))
        answers = [r for r in results if r is not None]
        accepted = sum(r.status == "accepted" for r in answers)
        return SubmitTxBatchResult(accepted=accepted, results=answers)

    async def tx(self, tx_hash: TxHash) -> TxStatus:
        code, status = await self.query(f"/txs/{tx_hash}")
        if code:
            raise rejection(status)
        if status["status"] != "committed":
            return parse(TxStatus, {"tx_hash": str(tx_hash), **status})
        height, index = int(status["height"]), int(status["index"])
        block = await self.call("block", height=str(height))
        txs = [base64.b64decode(t) for t in block["block"]["data"]["txs"] or []]
        raw = txs[index]
        # the inclusion proof, from the block itself: CometBFT's `tx` call would need its tx
        # indexer, which runs behind the commit and under load may not have the tx yet
        leaves = [hashlib.sha256(t).digest() for t in txs]
        root = bytes.fromhex(block["block"]["header"]["data_hash"])
        if codec.merkle_root(leaves, sha256=True) != root:
            raise Rejected("node_error", f"block {height}'s txs do not hash to its data_hash")
        tx: Transaction = codec.decode(raw, Transaction)
        return parse(
            TxStatus,
            {
                "tx_hash": str(tx_hash),
                "status": "committed",
                "tx": tx_to_json(tx),
                "height": height,
                "block_hash": block["block_id"]["hash"].lower(),
                "index": index,
                "tx_count": len(txs),
                "tx_root": root.hex(),
                "proof": [p.hex() for p in codec.merkle_proof(leaves, index, sha256=True)],
                "proof_hash": "sha256",
                "tx_bytes": raw.hex(),
            },
        )

    async def block(self, ref: BlockRef = None) -> BlockPublic:
        if ref is None:
            found = await self.call("block")
        elif isinstance(ref, int):
            found = await self.call("block", height=str(ref))
        else:
            found = await self.call("block_by_hash", hash=base64.b64encode(bytes(ref)).decode())
        if found.get("block") is None:
            raise NotFound("unknown_block", f"no block {'at the tip' if ref is None else ref}")
        block, header = found["block"], found["block"]["header"]
        raws = [base64.b64decode(t) for t in block["data"]["txs"] or []]
        txs = []
        for raw in raws:
            try:
                txs.append(tx_to_json(codec.decode(raw, Transaction)))
            except ChainError:
                txs.append({"type": "undecodable", "hex": raw.hex()})
        return parse(
            BlockPublic,
            {
                "hash": found["block_id"]["hash"].lower(),
                "height": int(header["height"]),
                "header": header,
                "txs": txs,
                "signature": "",
                "size_bytes": sum(len(r) for r in raws),
            },
        )

    async def blocks(self, limit: int) -> BlockList:
        """The newest canonical blocks, newest first, from `blockchain` (20 metas a call)."""
        found = await self.call("blockchain")
        metas: list[dict[str, Any]] = list(found["block_metas"])
        top = int(found["last_height"])
        while len(metas) < limit and metas and int(metas[-1]["header"]["height"]) > 1:
            below = int(metas[-1]["header"]["height"]) - 1
            more = await self.call(
                "blockchain", minHeight=str(max(1, below - 19)), maxHeight=str(below)
            )
            if not more["block_metas"]:
                break
            metas.extend(more["block_metas"])
        blocks = [
            {
                "height": int(m["header"]["height"]),
                "hash": m["block_id"]["hash"].lower(),
                "timestamp_ms": _millis(m["header"]["time"]),
                "proposer": m["header"]["proposer_address"].lower(),
                "tx_count": int(m["num_txs"]),
            }
            for m in metas[:limit]
            if int(m["header"]["height"]) <= top
        ]
        return parse(BlockList, {"blocks": blocks})

    async def validators(self) -> ValidatorList:
        found = await self.call("validators", per_page="100")
        validators = []
        for v in found["validators"]:
            key = base64.b64decode(v["pub_key"]["value"])
            ed25519 = v["pub_key"]["type"].endswith("PubKeyEd25519")
            validators.append(
                {
                    "account": str(codec.compute_account_id(key)) if ed25519 else None,
                    "address": v["address"].lower(),
                    "scheme": "ed25519" if ed25519 else v["pub_key"]["type"],
                    "public_key": key.hex(),
                    "voting_power": int(v["voting_power"]),
                    "proposer_priority": int(v["proposer_priority"]),
                }
            )
        return parse(
            ValidatorList, {"height": int(found["block_height"]), "validators": validators}
        )

    async def status(self) -> NodeStatus:
        node = await self.call("status")
        _, app = await self.query("/status")
        sync = node["sync_info"]
        if self._intake is not None:  # the apps hold the pending txs: CometBFT's pool is off
            pool_size = int(app["pool_size"])
        else:
            pool_size = int((await self.call("num_unconfirmed_txs"))["n_txs"])
        return parse(
            NodeStatus,
            {
                "version": __version__,
                "chain_id": node["node_info"]["network"],
                "genesis_hash": app["genesis_hash"],
                "height": int(sync["latest_block_height"]),
                "tip": sync["latest_block_hash"].lower() or "0" * 64,
                "tip_timestamp_ms": _millis(sync["latest_block_time"]),
                "pool_size": pool_size,
                "min_fee": app["min_fee"],
                "impersonation": app["impersonation"],
                "validators": app["validators"],
                "validator": None,
                "block_time_secs": app.get("block_time_secs", 1.0),
                "floors": app.get("floors", {}),
            },
        )


def _millis(timestamp: str) -> int:
    """CometBFT's RFC 3339 time (nanoseconds, Z) as Unix milliseconds."""
    seconds, _, fraction = timestamp.rstrip("Z").partition(".")
    when = datetime.fromisoformat(seconds).replace(tzinfo=UTC)
    return int(when.timestamp()) * 1000 + int((fraction + "000")[:3])
