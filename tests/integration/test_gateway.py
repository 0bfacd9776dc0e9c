"""The gateway in front of a node RPC served on loopback (engine with a verifier double)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from authchain.chain import crypto
from authchain.chain.config import ChainConfig
from authchain.chain.rpc import RpcContext, create_rpc_app
from authchain.chain.schemas import MAX_BATCH_BYTES, MAX_BATCH_TXS, encode_tx_hex
from authchain.chain.types import TxTransfer
from authchain.client import _batches
from authchain.gateway.app import create_app
from authchain.gateway.config import ApiSettings
from authchain.gateway.node_client import HttpNodeClient
from tests.support.chain import CHAIN, OWNER, T0, VALIDATOR, FakeVerifier, aid, make_engine
from tests.support.servers import free_port, serve_app

SEED = {
    "owner_account_hex": str(OWNER.account),
    "aid_hex": str(aid(1)),
    "scheme_id": "multi_factor_v2",
    "evidence_hash_hex": "cc" * 32,
    "wm_profile": {
        "tau_input": 0.9,
        "tau_feat": 0.2,
        "logit_band_low": -0.05,
        "logit_band_high": 0.05,
    },
}


async def gateway_for(node_urls: list[str]) -> httpx.AsyncClient:
    settings = ApiSettings(node_urls=node_urls, node_timeout_secs=2)
    app = create_app(settings, HttpNodeClient(node_urls, timeout_secs=2))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture
async def chain(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, str]]:
    impersonation = getattr(request, "param", True)
    engine = make_engine(FakeVerifier(), impersonation=impersonation)
    app = create_rpc_app(
        RpcContext(engine, ChainConfig(chain_id=CHAIN, genesis={"min_fee": 1}), VALIDATOR.account)
    )
    async with serve_app(app) as url:
        yield engine, url


async def test_fails_over_to_a_live_node_and_registers(chain: tuple[Any, str]) -> None:
    engine, url = chain
    dead = f"http://127.0.0.1:{free_port()}"
    async with await gateway_for([dead, url]) as gw:
        assert (await gw.get("/health")).json() == {"status": "ok"}
        answer = await gw.post("/models/register", json=SEED)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "queued" and answer.json()["aid"] == SEED["aid_hex"]
        second = await gw.post("/models/register", json={**SEED, "aid_hex": str(aid(2))})
        assert second.status_code == 202  # the next nonce was filled in
        await engine.propose_block(VALIDATOR, T0 + 5_000)
        status = (await gw.get(f"/txs/{answer.json()['tx_hash']}")).json()
        assert status["status"] == "committed" and status["height"] == 1
        model = (await gw.get(f"/models/{SEED['aid_hex']}")).json()
        assert model["owner"] == str(OWNER.account)
        again = await gw.post("/models/register", json=SEED)
        assert again.status_code == 400 and again.json()["reason"] == "aid_already_registered"
        metrics = (await gw.get("/metrics")).text
        assert 'gateway_registrations_total{result="queued"} 2.0' in metrics


@pytest.mark.parametrize("chain", [False], indirect=True)
async def test_unsigned_register_without_impersonation_is_401(chain: tuple[Any, str]) -> None:
    _, url = chain
    async with await gateway_for([url]) as gw:
        answer = await gw.post("/models/register", json=SEED)
    assert answer.status_code == 401 and answer.json()["reason"] == "signature_required"
    assert "authchain register --key" in answer.json()["detail"]


async def test_no_node_answering_is_503() -> None:
    async with await gateway_for([f"http://127.0.0.1:{free_port()}"]) as gw:
        answer = await gw.get("/status")
    assert answer.status_code == 503 and answer.json()["reason"] == "node_unavailable"


async def test_a_batch_through_the_gateway_answers_per_tx(chain: tuple[Any, str]) -> None:
    engine, url = chain
    txs = [
        crypto.sign_tx(TxTransfer(OWNER.account, VALIDATOR.account, 1, 1, n), OWNER, CHAIN)
        for n in range(3)
    ]
    body = {"txs": [encode_tx_hex(tx) for tx in txs] + [encode_tx_hex(txs[0])]}
    async with await gateway_for([url]) as gw:
        answer = await gw.post("/txs/batch", json=body)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["status"] for r in results] == ["accepted"] * 3 + ["rejected"]
        assert results[3]["reason"] == "duplicate"
        assert (await gw.post("/txs/batch", json={"txs": []})).status_code == 422
    assert len(engine.pool) == 3


def test_submit_many_cuts_batches_within_the_limits() -> None:
    hexes = [f"{i:04x}" + "ab" * 5_350 for i in range(700)]  # ML-DSA-sized txs
    batches = _batches(hexes)
    assert [h for b in batches for h in b] == hexes
    for batch in batches:
        assert len(batch) <= MAX_BATCH_TXS
        assert len(json.dumps({"txs": batch})) <= MAX_BATCH_BYTES
    assert len(batches) == 2 + (2 * MAX_BATCH_BYTES < 700 * 10_708)
