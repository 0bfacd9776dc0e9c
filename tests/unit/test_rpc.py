"""Node RPC handlers over an in-process engine (verifier double; unit level)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from authchain.chain import codec, crypto
from authchain.chain.config import ChainConfig
from authchain.chain.consensus.engine import ConsensusEngine
from authchain.chain.errors import Rejected
from authchain.chain.rpc import RELAYED_HEADER, Admit, RpcContext, create_intake_app, create_rpc_app
from authchain.chain.schemas import TxStatus, encode_tx_hex, verify_tx_status_proof
from authchain.chain.types import Transaction, TxHash, TxTransfer
from tests.support.chain import (
    CHAIN,
    OWNER,
    T0,
    VALIDATOR,
    FakeVerifier,
    aid,
    make_engine,
    register,
)


@pytest.fixture
def engine() -> ConsensusEngine:
    return make_engine(FakeVerifier(failing={aid(9)}), impersonation=False)


@pytest.fixture
async def client(engine: ConsensusEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_rpc_app(
        RpcContext(engine, ChainConfig(chain_id=CHAIN, genesis={"min_fee": 1}), VALIDATOR.account)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rpc") as c:
        yield c


async def submit(client: httpx.AsyncClient, tx: object) -> httpx.Response:
    return await client.post("/txs", json={"tx": encode_tx_hex(tx)})  # type: ignore[arg-type]


async def test_health_and_status(client: httpx.AsyncClient, engine: ConsensusEngine) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    status = (await client.get("/status")).json()
    assert status["chain_id"] == CHAIN and status["height"] == 0
    assert status["tip"] == str(engine.tip) and status["validator"] == str(VALIDATOR.account)
    assert status["impersonation"] is False


async def test_submitted_tx_is_queued_then_committed_with_valid_proof(
    client: httpx.AsyncClient, engine: ConsensusEngine
) -> None:
    transfer = TxTransfer(OWNER.account, VALIDATOR.account, 10, 0, 2)
    txs: list[Transaction] = [
        register(0, 0),
        register(1, 1),
        crypto.sign_tx(transfer, OWNER, CHAIN),
    ]
    hashes = []
    for tx in txs:
        response = await submit(client, tx)
        assert response.status_code == 202, response.text
        hashes.append(response.json()["tx_hash"])
    assert hashes == [str(codec.compute_tx_hash(tx)) for tx in txs]
    queued = (await client.get(f"/txs/{hashes[1]}")).json()
    assert queued["status"] == "queued" and queued["tx"]["type"] == "register_model"

    await engine.propose_block(VALIDATOR, T0 + 5_000)
    for i, tx_hash in enumerate(hashes):
        status = TxStatus.model_validate((await client.get(f"/txs/{tx_hash}")).json())
        assert status.status == "committed" and status.height == 1 and status.index == i
        assert status.tx_count == 3 and verify_tx_status_proof(status)
        tampered = status.model_copy(update={"index": (i + 1) % 3})
        assert not verify_tx_status_proof(tampered)

    block = (await client.get("/blocks/1")).json()
    assert block["hash"] == str(engine.tip) and [t["hash"] for t in block["txs"]] == hashes
    assert (await client.get(f"/blocks/{engine.tip}")).json() == block
    assert (await client.get("/blocks/latest")).json() == block

    art = (await client.get(f"/artefacts/{aid(1)}")).json()
    assert art["owner"] == str(OWNER.account) and art["registered_at"] == 1
    assert art["wm_profile"]["tau_input"] == 0.9 and art["uses"] == 0
    account = (await client.get(f"/accounts/{OWNER.account}")).json()
    assert account["nonce"] == 3 and account["next_nonce"] == 3 and account["balance"] == 990


async def test_failed_watermark_is_rejected_with_reason(
    client: httpx.AsyncClient, engine: ConsensusEngine
) -> None:
    tx_hash = (await submit(client, register(9, 0))).json()["tx_hash"]
    await engine.propose_block(VALIDATOR, T0 + 5_000)
    status = (await client.get(f"/txs/{tx_hash}")).json()
    assert status["status"] == "rejected" and status["reason"] == "watermark_not_found"
    assert "trigger_acc=0.1" in status["detail"]
    assert (await client.get(f"/artefacts/{aid(9)}")).status_code == 404


async def test_next_nonce_counts_pending_txs(client: httpx.AsyncClient) -> None:
    for n in range(2):
        assert (await submit(client, register(n, n))).status_code == 202
    account = (await client.get(f"/accounts/{OWNER.account}")).json()
    assert account["nonce"] == 0 and account["next_nonce"] == 2


@pytest.mark.parametrize(
    ("make_tx", "status", "reason"),
    [
        (lambda: register(1, 0, signed=False), 400, "unsigned_not_allowed"),
        (lambda: register(1, 5), 202, None),  # a future nonce waits in the pool
        (
            lambda: crypto.sign_tx(
                TxTransfer(OWNER.account, VALIDATOR.account, 10**6, 0, 0), OWNER, CHAIN
            ),
            400,
            "insufficient_balance",
        ),
        (
            lambda: crypto.sign_tx(register(1, 0), OWNER, "another-chain"),
            400,
            "bad_signature",
        ),
    ],
)
async def test_checktx_refusals_name_their_reason(
    client: httpx.AsyncClient, make_tx: object, status: int, reason: str | None
) -> None:
    response = await submit(client, make_tx())  # type: ignore[operator]
    assert response.status_code == status, response.text
    if reason is not None:
        assert response.json()["reason"] == reason


async def test_duplicate_tx_is_refused(client: httpx.AsyncClient) -> None:
    assert (await submit(client, register(1, 0))).status_code == 202
    again = await submit(client, register(1, 0))
    assert again.status_code == 400 and again.json()["reason"] == "duplicate"


async def test_pool_full_is_503(client: httpx.AsyncClient) -> None:
    for n in range(5):  # make_engine's pool holds 5
        assert (await submit(client, register(n, n))).status_code == 202
    full = await submit(client, register(5, 5))
    assert full.status_code == 503 and full.json()["reason"] == "pool_full"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tx": "zz"}, "tx"),
        ({"tx": "abc"}, "tx"),
        ({}, "tx"),
        ({"tx": "0011"}, "tx"),
        ({"tx": "0x" + codec.encode(register(1, 0)).hex() + "00"}, "tx"),
        ({"tx": "00", "extra": 1}, "extra"),
    ],
)
async def test_malformed_submissions_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/txs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and response.json()["detail"]


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/txs", content=b"x" * 300_000)
    assert response.status_code == 413 and response.json()["reason"] == "body_too_large"


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/txs/" + "ab" * 32, 404, "unknown_tx"),
        ("/txs/xyz", 422, "invalid_request"),
        ("/blocks/7", 404, "unknown_block"),
        ("/blocks/" + "ab" * 32, 404, "unknown_block"),
        ("/blocks/-1", 422, "invalid_request"),
        ("/artefacts/" + "ab" * 32, 404, "unknown_artefact"),
        ("/artefacts/..%2F..%2Fetc", 404, "not_found"),
        ("/artefacts/" + "ab" * 31, 422, "invalid_request"),
        ("/accounts/12", 422, "invalid_request"),
        ("/nope", 404, "not_found"),
    ],
)
async def test_bad_reads_are_clear_4xx(
    client: httpx.AsyncClient, path: str, status: int, reason: str
) -> None:
    response = await client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason


async def test_unknown_account_reads_as_empty(client: httpx.AsyncClient) -> None:
    account = (await client.get("/accounts/" + "ee" * 32)).json()
    assert account == {"account": "ee" * 32, "balance": 0, "nonce": 0, "next_nonce": 0}


async def test_the_intake_admits_a_clients_batch_for_relay_and_a_peers_batch_without() -> None:
    """An app that holds its pending txs under CometBFT serves the two submission routes
    (`create_intake_app`): a client's txs go through the `admit` that relays them, a batch
    another validator relayed (`RELAYED_HEADER`) through the one that does not; answers and
    refusals are the embedded RPC's."""
    engine = make_engine(FakeVerifier(), impersonation=False)
    calls: list[str] = []

    def admit_as(kind: str) -> Admit:
        async def admit(txs: Sequence[Transaction]) -> list[TxHash | Rejected]:
            calls.append(kind)
            return await engine.submit_txs(txs)

        return admit

    app = create_intake_app(admit_as("client"), admit_as("relayed"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as c:
        assert (await c.get("/health")).json() == {"status": "ok"}
        accepted = await c.post("/txs", json={"tx": encode_tx_hex(register(0, 0))})
        assert accepted.status_code == 202
        assert accepted.json()["tx_hash"] == str(codec.compute_tx_hash(register(0, 0)))
        relayed = await c.post(
            "/txs/batch",
            json={"txs": [encode_tx_hex(register(1, 1)), encode_tx_hex(register(0, 0))]},
            headers={RELAYED_HEADER: "1"},
        )
        answers = relayed.json()["results"]
        assert [a["status"] for a in answers] == ["accepted", "rejected"]
        assert answers[1]["reason"] == "duplicate"
        assert (await c.get("/status")).status_code == 404  # reads are CometBFT's RPC's
    assert calls == ["client", "relayed"]
    assert len(engine.pool) == 2
