"""`CometNodeClient`: the gateway's `NodeClient` on a CometBFT network.

It answers the node-RPC paths the gateway's routes use with the same JSON shapes as an
embedded node, from CometBFT's own RPC (JSON-RPC 2.0 over HTTP), so that standard CometBFT
tooling sees exactly the chain the gateway shows:

    POST /txs                 broadcast_tx_sync (CheckTx's code and reason come back)
    GET  /txs/{hash}          abci_query /txs/{hash}; when committed, `block` for its bytes and
                              `tx?prove=true` for the inclusion proof against data_hash
    GET  /blocks?limit=N      blockchain (block metas), newest first
    GET  /blocks/latest|{ref} block / block_by_hash, the txs decoded
    GET  /accounts/{id}       abci_query /accounts/{id}
    GET  /artefacts/{aid}     abci_query /artefacts/{aid}
    GET  /claims?...          abci_query /claims?... (this validator's V_auth records)
    GET  /validators          validators (the account is BLAKE3 of the Ed25519 key)
    GET  /status              status + abci_query /status

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
from typing import Any
from urllib.parse import parse_qsl

import httpx

from authchain import __version__
from authchain.chain import codec
from authchain.chain.errors import ChainError
from authchain.chain.schemas import batch_field, tx_to_json
from authchain.chain.types import Transaction
from authchain.gateway.node_client import NodeUnavailable
from authchain.web import Failover

log = logging.getLogger(__name__)


class RpcError(Exception):
    """CometBFT answered with a JSON-RPC error."""

    def __init__(self, message: str, data: str) -> None:
        super().__init__(f"{message}: {data}")
        self.data = data


BATCH_CONCURRENCY = 8
"""`broadcast_tx_sync` calls in flight for one `POST /txs/batch`."""


def _answer(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def _error(status: int, reason: str, detail: str, field: str | None = None) -> httpx.Response:
    return _answer(status, {"reason": reason, "detail": detail, "field": field})


class CometNodeClient:
    """`NodeClient` over one or more CometBFT RPC endpoints."""

    def __init__(self, urls: Sequence[str], *, timeout_secs: float) -> None:
        self.failover = Failover(urls, "CometNodeClient")
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_secs))

    async def aclose(self) -> None:
        await self._client.aclose()

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

    async def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        route, _, params = path.partition("?")
        parts = route.strip("/").split("/")
        try:
            match method, parts:
                case "GET", ["blocks"]:
                    return await self._blocks(dict(parse_qsl(params)).get("limit", "20"))
                case "GET", ["claims"]:
                    code, value = await self.query(path)
                    return _answer(400 if code else 200, value)
                case "GET", ["validators"]:
                    return await self._validators()
                case "POST", ["txs"]:
                    return await self._submit(str((json or {}).get("tx", "")))
                case "POST", ["txs", "batch"]:
                    return await self._submit_batch([str(t) for t in (json or {}).get("txs", [])])
                case "GET", ["txs", tx_hash]:
                    return await self._tx_status(tx_hash)
                case "GET", ["blocks", ref]:
                    return await self._block(ref)
                case "GET", ["accounts" | "artefacts", _] | ["accounts" | "artefacts", _, "proof"]:
                    code, value = await self.query(path)
                    if code:
                        return _answer(400 if value.get("field") else 404, value)
                    return _answer(200, value)
                case "GET", ["status"]:
                    return await self._status()
                case "GET", ["health"]:
                    await self.call("health")
                    return _answer(200, {"status": "ok"})
        except RpcError as exc:
            return _error(400, "node_error", str(exc))
        return _error(404, "unknown_path", f"{method} {path} is not a node route")

    async def _submit(self, tx_hex: str) -> httpx.Response:
        raw = bytes.fromhex(tx_hex.lower().removeprefix("0x"))
        try:
            tx: Transaction = codec.decode(raw, Transaction)
        except ChainError as exc:
            return _error(422, "invalid_tx", f"tx: {exc}", "tx")
        try:
            result = await self.call("broadcast_tx_sync", tx=base64.b64encode(raw).decode())
        except RpcError as exc:
            if "cache" in exc.data:
                return _error(400, "duplicate", "this tx is already pending")
            if "full" in exc.data:
                return _error(503, "pool_full", exc.data)
            raise
        if int(result.get("code", 0)):
            try:
                body = json.loads(result.get("log") or "{}")
            except ValueError:
                body = {"reason": "check_tx_failed", "detail": result.get("log", "")}
            return _answer(503 if body.get("reason") == "pool_full" else 400, body)
        return _answer(202, {"status": "accepted", "tx_hash": str(codec.compute_tx_hash(tx))})

    async def _submit_batch(self, txs: list[str]) -> httpx.Response:
        """CometBFT takes txs one at a time: `broadcast_tx_sync` each, 8 in flight (a
        sender's nonces may arrive a few apart, within the pool's nonce gap); the same per-tx
        answers, in order, as the node's `POST /txs/batch`."""
        gate = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(i: int, tx_hex: str) -> dict[str, Any]:
            async with gate:
                answer = await self._submit(tx_hex)
            body: dict[str, Any] = answer.json()
            if answer.status_code == 202:
                return body
            return {
                "status": "rejected", "reason": body.get("reason"), "detail": body.get("detail"),
                "field": batch_field(i, body.get("field")),
            }  # fmt: skip

        results = await asyncio.gather(*(one(i, t) for i, t in enumerate(txs)))
        accepted = sum(r["status"] == "accepted" for r in results)
        return _answer(200, {"accepted": accepted, "results": results})

    async def _tx_status(self, tx_hash: str) -> httpx.Response:
        code, status = await self.query(f"/txs/{tx_hash}")
        if code:
            return _answer(404 if status.get("reason") == "unknown_tx" else 400, status)
        if status["status"] != "committed":
            return _answer(200, {"tx_hash": tx_hash, **status})
        height, index = int(status["height"]), int(status["index"])
        block = await self.call("block", height=str(height))
        raw = base64.b64decode(block["block"]["data"]["txs"][index])
        found = await self.call(
            "tx", hash=base64.b64encode(hashlib.sha256(raw).digest()).decode(), prove=True
        )
        proof = found["proof"]
        tx: Transaction = codec.decode(raw, Transaction)
        return _answer(
            200,
            {
                "tx_hash": tx_hash,
                "status": "committed",
                "tx": tx_to_json(tx),
                "height": height,
                "block_hash": block["block_id"]["hash"].lower(),
                "index": index,
                "tx_count": int(proof["proof"]["total"]),
                "tx_root": base64.b64decode(proof["root_hash"]).hex()
                if not _is_hex(proof["root_hash"])
                else proof["root_hash"].lower(),
                "proof": [base64.b64decode(a).hex() for a in proof["proof"]["aunts"] or []],
                "proof_hash": "sha256",
                "tx_bytes": raw.hex(),
            },
        )

    async def _block(self, ref: str) -> httpx.Response:
        if ref == "latest":
            found = await self.call("block")
        elif ref.isascii() and ref.isdigit() and len(ref) <= 19:
            found = await self.call("block", height=ref)
        elif len(ref) == 64 and _is_hex(ref):
            found = await self.call("block_by_hash", hash=base64.b64encode(bytes.fromhex(ref)))
        else:
            return _error(422, "invalid_request", "ref: expected a height or a 64-hex hash", "ref")
        if found.get("block") is None:
            return _error(404, "unknown_block", f"no block {ref}")
        block, header = found["block"], found["block"]["header"]
        raws = [base64.b64decode(t) for t in block["data"]["txs"] or []]
        txs = []
        for raw in raws:
            try:
                txs.append(tx_to_json(codec.decode(raw, Transaction)))
            except ChainError:
                txs.append({"type": "undecodable", "hex": raw.hex()})
        return _answer(
            200,
            {
                "hash": found["block_id"]["hash"].lower(),
                "height": int(header["height"]),
                "header": header,
                "txs": txs,
                "signature": "",
                "size_bytes": sum(len(r) for r in raws),
            },
        )

    async def _blocks(self, limit_text: str) -> httpx.Response:
        """The newest canonical blocks, newest first, from `blockchain` (20 metas a call)."""
        if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= 100):
            return _error(422, "invalid_request", "limit: must be an integer in [1, 100]", "limit")
        limit = int(limit_text)
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
        return _answer(200, {"blocks": blocks})

    async def _validators(self) -> httpx.Response:
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
        return _answer(200, {"height": int(found["block_height"]), "validators": validators})

    async def _status(self) -> httpx.Response:
        node = await self.call("status")
        _, app = await self.query("/status")
        sync = node["sync_info"]
        millis = _millis(sync["latest_block_time"])
        mempool = await self.call("num_unconfirmed_txs")
        return _answer(
            200,
            {
                "version": __version__,
                "chain_id": node["node_info"]["network"],
                "genesis_hash": app["genesis_hash"],
                "height": int(sync["latest_block_height"]),
                "tip": sync["latest_block_hash"].lower() or "0" * 64,
                "tip_timestamp_ms": millis,
                "pool_size": int(mempool["n_txs"]),
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


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
