"""The gateway's typed node API: each node's refusals become NotFound, Rejected or
NodeUnavailable, and `api_error` maps those to HTTP in one place. The nodes here are
`httpx.MockTransport`s answering as an embedded node's RPC and as CometBFT's JSON-RPC do."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from authchain.chain import codec, crypto
from authchain.chain.errors import Rejected
from authchain.chain.schemas import (
    ClaimQuery,
    SubmitTx,
    SubmitTxBatch,
    encode_tx_hex,
    verify_tx_status_proof,
)
from authchain.chain.types import (
    Aid,
    SigScheme,
    Transaction,
    TxHash,
    TxTransfer,
    get_signer,
)
from authchain.gateway.comet_client import CometNodeClient
from authchain.gateway.node_client import HttpNodeClient, NodeUnavailable, NotFound, api_error
from tests.support.chain import CHAIN, OWNER, register

AID = Aid(b"\x05" * 32)


def test_node_errors_map_to_http_in_one_place() -> None:
    cases: list[tuple[Rejected | NodeUnavailable, int]] = [
        (NotFound("unknown_tx", "no such tx"), 404),
        (Rejected("pool_full", "full"), 503),
        (Rejected("mempool_full", "CometBFT's mempool is full"), 503),
        (Rejected("invalid_tx", "tx.fee: not an int", field="tx.fee"), 422),
        (Rejected("invalid_request", "limit: too big", field="limit"), 422),
        (Rejected("bad_nonce", "nonce 3 already used"), 400),
        (Rejected("claim_below_floor", "too few", field="evidence.trigger_count"), 400),
        (NodeUnavailable("connection refused"), 503),
    ]
    for exc, status in cases:
        error = api_error(exc)
        assert error.status == status, exc
        body = json.loads(bytes(error.response().body))
        if isinstance(exc, Rejected):
            assert (body["reason"], body.get("field")) == (exc.reason, exc.field)
        else:
            assert body["reason"] == "node_unavailable"


def http_node(answer: Callable[[httpx.Request], httpx.Response]) -> HttpNodeClient:
    return HttpNodeClient(["http://node"], timeout_secs=1, transport=httpx.MockTransport(answer))


async def test_an_embedded_nodes_answers_become_schemas_and_typed_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/artefacts/"):
            return httpx.Response(
                404, json={"reason": "unknown_artefact", "detail": "not registered"}
            )
        match request.url.path:
            case "/txs":
                return httpx.Response(
                    400, json={"reason": "bad_nonce", "detail": "used", "field": "tx.nonce"}
                )
            case "/status":
                return httpx.Response(200, json={"not": "a status"})
            case "/claims":
                assert request.url.params["owner"] == str(OWNER.account)
                return httpx.Response(200, json={"claims": []})
        return httpx.Response(500, json={"reason": "internal", "detail": "boom"})

    node = http_node(answer)
    with pytest.raises(NotFound) as missing:
        await node.artefact(AID)
    assert missing.value.reason == "unknown_artefact"
    with pytest.raises(Rejected) as refused:
        await node.submit_tx(SubmitTx(tx=encode_tx_hex(register(1, 0))))
    assert (refused.value.reason, refused.value.field) == ("bad_nonce", "tx.nonce")
    assert not isinstance(refused.value, NotFound)
    with pytest.raises(NodeUnavailable, match="not a NodeStatus"):
        await node.status()  # another program on the node's port
    with pytest.raises(NodeUnavailable, match="HTTP 500"):
        await node.validators()
    assert (await node.claims(ClaimQuery(owner=OWNER.account))).claims == []
    await node.aclose()


def http_down(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_no_node_answering_is_node_unavailable() -> None:
    node = http_node(http_down)
    with pytest.raises(NodeUnavailable, match="ConnectError"):
        await node.tx(TxHash(b"\x01" * 32))
    comet = CometNodeClient(["http://c"], timeout_secs=1, transport=httpx.MockTransport(http_down))
    with pytest.raises(NodeUnavailable):
        await comet.status()


def comet_node(results: dict[str, Any]) -> CometNodeClient:
    """A CometBFT RPC answering each method from `results` (a result, an error, or a
    function of the params)."""

    def answer(request: httpx.Request) -> httpx.Response:
        call = json.loads(request.content)
        found = results[call["method"]]
        if callable(found):
            found = found(call["params"])
        if isinstance(found, Exception):
            error = {"code": -32603, "message": "Internal error", "data": str(found)}
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "error": error})
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": found})

    return CometNodeClient(["http://comet"], timeout_secs=1, transport=httpx.MockTransport(answer))


def abci_answer(code: int, value: dict[str, Any]) -> dict[str, Any]:
    encoded = base64.b64encode(json.dumps(value).encode()).decode()
    return {"response": {"code": code, "value": encoded}}


async def test_cometbft_answers_become_the_same_schemas_and_errors() -> None:
    def query(params: dict[str, Any]) -> dict[str, Any]:
        if params["path"].startswith("/artefacts/"):
            return abci_answer(1, {"reason": "unknown_artefact", "detail": "not registered"})
        return abci_answer(1, {"reason": "invalid_request", "detail": "bad", "field": "limit"})

    tx = register(1, 0)
    refused = crypto.sign_tx(register(2, 0, signed=False), OWNER, CHAIN)
    log = json.dumps({"reason": "claim_below_floor", "detail": "K", "field": "evidence.k"})

    def broadcast(params: dict[str, Any]) -> Any:
        raw = base64.b64decode(params["tx"])
        if raw == bytes.fromhex(encode_tx_hex(tx)):
            return RuntimeError("tx already exists in cache")
        return {"code": 1, "log": log}

    node = comet_node({
        "abci_query": query,
        "broadcast_tx_sync": broadcast,
        "block": {"block": None, "block_id": {"hash": ""}},
    })  # fmt: skip
    with pytest.raises(NotFound):
        await node.artefact(AID)
    with pytest.raises(Rejected) as bad:
        await node.claims(ClaimQuery())
    assert (bad.value.reason, bad.value.field, api_error(bad.value).status) == (
        "invalid_request", "limit", 422,
    )  # fmt: skip
    with pytest.raises(NotFound) as no_block:
        await node.block(7)
    assert no_block.value.reason == "unknown_block"
    with pytest.raises(Rejected, match="duplicate"):
        await node.submit_tx(SubmitTx(tx=encode_tx_hex(tx)))
    with pytest.raises(Rejected, match="invalid_tx"):
        await node.submit_tx(SubmitTx(tx="00ff"))
    batch = await node.submit_txs(SubmitTxBatch(txs=[encode_tx_hex(refused)]))
    assert batch.accepted == 0
    assert (batch.results[0].reason, batch.results[0].field) == (
        "claim_below_floor", "txs.0.evidence.k",
    )  # fmt: skip
    await node.aclose()


async def test_a_cometbft_batch_sends_each_senders_txs_in_order() -> None:
    """Its apps admit only a sender's next nonce (`nonce_gap`), so a batch must not let a
    sender's later tx overtake an earlier one, however many are in flight."""
    arrived: list[tuple[bytes, int]] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        params = json.loads(request.content)["params"]
        tx: Transaction = codec.decode(base64.b64decode(params["tx"]), Transaction)
        await asyncio.sleep(0.002 * (7 - tx.nonce))  # a later nonce would answer sooner
        arrived.append((bytes(get_signer(tx)), tx.nonce))
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"code": 0}})

    other = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x44" * 32)
    txs: list[Transaction] = []
    for n in range(8):  # two senders interleaved, each in nonce order
        txs += [register(n + 1, n, signed=False), TxTransfer(other.account, OWNER.account, 1, 0, n)]
    node = CometNodeClient(["http://comet"], timeout_secs=5, transport=httpx.MockTransport(answer))
    batch = await node.submit_txs(SubmitTxBatch(txs=[encode_tx_hex(t) for t in txs]))
    await node.aclose()
    assert batch.accepted == len(txs)
    assert [r.tx_hash for r in batch.results] == [codec.compute_tx_hash(t) for t in txs]
    for sender in (OWNER, other):
        assert [n for s, n in arrived if s == bytes(sender.account)] == list(range(8))


async def test_a_committed_txs_proof_comes_from_its_block_not_cometbfts_indexer() -> None:
    """CometBFT indexes txs behind the commit: under load its `tx` call says "not found" for a
    tx the app already reports committed. The gateway proves inclusion from the block itself
    (its txs against the header's data_hash) and never asks the indexer; a block whose txs do
    not hash to its data_hash is an error, not a proof."""
    txs = [codec.encode(register(n, n)) for n in range(1, 6)]
    leaves = [hashlib.sha256(t).digest() for t in txs]
    data_hash = codec.merkle_root(leaves, sha256=True).hex().upper()
    tx_hash = codec.compute_tx_hash(register(4, 4))
    block: dict[str, Any] = {
        "block_id": {"hash": "AB" * 32},
        "block": {
            "header": {"height": "7", "data_hash": data_hash},
            "data": {"txs": [base64.b64encode(t).decode() for t in txs]},
        },
    }
    results: dict[str, Any] = {
        "abci_query": abci_answer(0, {"status": "committed", "height": 7, "index": 3}),
        "block": block,
        "tx": RuntimeError(f"tx ({tx_hash}) not found"),
    }
    node = comet_node(results)
    status = await node.tx(tx_hash)
    assert (status.status, status.height, status.index, status.tx_count) == ("committed", 7, 3, 5)
    assert status.tx_root is not None and status.tx_root.hex().upper() == data_hash
    assert status.proof_hash == "sha256" and verify_tx_status_proof(status)
    block["block"]["header"]["data_hash"] = "00" * 32  # txs that are not the block's
    with pytest.raises(Rejected, match="data_hash"):
        await node.tx(tx_hash)
    await node.aclose()
