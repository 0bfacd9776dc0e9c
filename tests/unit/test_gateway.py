"""The gateway in front of a node RPC served on loopback (engine with a verifier double)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from authchain.chain.config import ChainConfig
from authchain.chain.rpc import RpcContext, create_rpc_app
from authchain.gateway.app import create_app
from authchain.gateway.config import ApiSettings
from authchain.gateway.node_client import HttpNodeClient
from tests.servers import free_port, serve_app
from tests.unit.test_engine import CHAIN, OWNER, T0, VALIDATOR, FakeVerifier, aid, make_engine

SEED = {
    "owner_account_hex": str(OWNER.account),
    "aid_hex": str(aid(1)),
    "scheme_id": "multi_factor_v1",
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
