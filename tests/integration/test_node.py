"""`authchain node` as a real process: RocksDB in a temp dir, RPC and /metrics on loopback.

No ML service runs here (it is another issue's process; the end-to-end tests start it), so
the node's verifier points at a closed port: registrations stay pooled ("unavailable is not
invalid") while transfers commit. That is exactly the state a crash must not lose.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from authchain.chain import crypto
from authchain.chain.schemas import (
    StateProofPublic,
    TxStatus,
    encode_tx_hex,
    verify_tx_status_proof,
)
from authchain.chain.types import (
    AccountId,
    Aid,
    EvidenceHash,
    EvidenceRef,
    SigScheme,
    Transaction,
    TxRegisterModel,
    TxTransfer,
    WmProfile,
)
from tests.support.procs import ChainFixture, Proc, Samples, scrape

PROFILE = WmProfile(0.9, 0.2, -0.05, 0.05)
BOB = AccountId(b"\x0b" * 32)


@pytest.fixture
def chain(tmp_path: Path) -> ChainFixture:
    return ChainFixture(tmp_path)


@pytest.fixture
def node(chain: ChainFixture) -> Iterator[Proc]:
    proc = chain.start_node()
    yield proc
    if proc.running:
        proc.stop(signal.SIGKILL)


def submit(chain: ChainFixture, tx: Transaction) -> str:
    response = httpx.post(f"{chain.rpc_url}/txs", json={"tx": encode_tx_hex(tx)}, timeout=10)
    assert response.status_code == 202, response.text
    tx_hash: str = response.json()["tx_hash"]
    return tx_hash


def get(chain: ChainFixture, path: str) -> Any:
    response = httpx.get(f"{chain.rpc_url}{path}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def transfer(chain: ChainFixture, nonce: int, amount: int = 100) -> TxTransfer:
    tx = TxTransfer(chain.account.account, BOB, amount, 0, nonce)
    return crypto.sign_tx(tx, chain.account, chain.chain_id)


def registration(chain: ChainFixture, owner: crypto.KeyPair, n: int) -> TxRegisterModel:
    evidence = EvidenceRef("multi_factor_v2", EvidenceHash(bytes([n]) * 32), PROFILE)
    tx = TxRegisterModel(owner.account, Aid(bytes([n + 1]) * 32), evidence, 0, 0)
    return crypto.sign_tx(tx, owner, chain.chain_id)


def metrics(chain: ChainFixture) -> Samples:
    return scrape(chain.metrics_url)


def test_sigkill_restart_keeps_every_block_and_pooled_tx(chain: ChainFixture, node: Proc) -> None:
    committed = [submit(chain, transfer(chain, n)) for n in range(3)]
    wait_for(
        "transfers to commit",
        lambda: all(get(chain, f"/txs/{h}")["status"] == "committed" for h in committed),
    )
    owners = [crypto.KeyPair.generate(SigScheme.ED25519) for _ in range(2)]
    pooled = [submit(chain, registration(chain, owner, n)) for n, owner in enumerate(owners)]
    pooled.append(submit(chain, transfer(chain, 5)))  # future nonce: waits for nonces 3 and 4
    height_seen = get(chain, "/status")["height"]
    wait_for("two more blocks", lambda: get(chain, "/status")["height"] >= height_seen + 2)
    for tx_hash in pooled:
        assert get(chain, f"/txs/{tx_hash}")["status"] == "queued"

    tip = get(chain, "/status")
    blocks = [get(chain, f"/blocks/{h}") for h in range(tip["height"] + 1)]
    assert node.stop(signal.SIGKILL) == -signal.SIGKILL

    restarted = chain.start_node()
    try:
        assert get(chain, "/status")["height"] >= tip["height"]
        for block in blocks:
            assert get(chain, f"/blocks/{block['height']}") == block
        for tx_hash in pooled:
            assert get(chain, f"/txs/{tx_hash}")["status"] == "queued"
        for tx_hash in committed:
            status = TxStatus.model_validate(get(chain, f"/txs/{tx_hash}"))
            assert status.status == "committed" and verify_tx_status_proof(status)
        account = get(chain, f"/accounts/{chain.account.account}")
        assert account["balance"] == 1_000_000 - 300 and account["nonce"] == 3
        check_state_proofs(chain, [chain.account.account, BOB, AccountId(b"\x0c" * 32)])
        wait_for("blocks after restart", lambda: get(chain, "/status")["height"] > tip["height"])
        assert "store has" not in restarted.log()
    finally:
        restarted.stop(signal.SIGKILL)


def check_state_proofs(chain: ChainFixture, accounts: list[AccountId]) -> None:
    """Each account's proof verifies against the state_root of the block at its height, and
    does not verify for any other value."""
    for account in accounts:
        proof = StateProofPublic.model_validate(get(chain, f"/accounts/{account}/proof"))
        header = get(chain, f"/blocks/{proof.height}")["header"]
        assert proof.app_hash.hex() == header["state_root"]
        assert proof.verify(bytes.fromhex(header["state_root"]))
        forged = proof.model_copy(update={"value": (proof.value or "") + "00"})
        assert not forged.verify(bytes.fromhex(header["state_root"]))
        if account == BOB:
            assert proof.record is not None and proof.record["balance"] == 300
    unknown = StateProofPublic.model_validate(get(chain, f"/artefacts/{'ab' * 32}/proof"))
    assert unknown.value is None and unknown.verify()


def test_sigterm_shuts_down_cleanly_and_restarts(chain: ChainFixture, node: Proc) -> None:
    wait_for("a block", lambda: get(chain, "/status")["height"] >= 1)
    assert node.stop(signal.SIGTERM) == 0
    assert "store closed" in node.log()
    again = chain.start_node()
    try:
        assert get(chain, "/status")["height"] >= 1
    finally:
        assert again.stop(signal.SIGINT) == 0


def test_metrics_are_scrapeable_and_move(chain: ChainFixture, node: Proc) -> None:
    before = metrics(chain)
    assert ("chain_height", ()) in before and ("process_resident_memory_bytes", ()) in before
    tx_hash = submit(chain, transfer(chain, 0))
    owner = crypto.KeyPair.generate(SigScheme.ED25519)
    submit(chain, registration(chain, owner, 7))
    wait_for("the transfer", lambda: get(chain, f"/txs/{tx_hash}")["status"] == "committed")
    wait_for(
        "a verifier call",
        lambda: metrics(chain)[("ml_verifier_calls_total", (("result", "unavailable"),))] > 0,
    )
    after = metrics(chain)
    assert after[("chain_height", ())] > before[("chain_height", ())]
    assert after[("chain_txs_committed_total", ())] >= 1 > before[("chain_txs_committed_total", ())]
    assert (
        after[("consensus_block_validation_seconds_count", ())]
        > before[("consensus_block_validation_seconds_count", ())]
    )
    assert after[("txpool_size", ())] == 1  # the registration waits for the ML service
    assert after[("ml_verifier_calls_total", (("result", "failed"),))] == 0


def test_bad_config_fails_at_start_naming_the_key(chain: ChainFixture, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(chain.write_config().read_text() + "\n[consensus2]\nx = 1\n")
    proc = Proc(["node", "--config", str(bad)], tmp_path / "bad.log").start()
    assert proc.popen is not None
    assert proc.popen.wait(30) == 1
    assert "consensus2: unknown key" in proc.log()
    assert "Traceback" not in proc.log()


def test_port_in_use_is_a_clear_error(chain: ChainFixture, node: Proc, tmp_path: Path) -> None:
    other = ChainFixture(tmp_path / "other", rpc_port=chain.rpc_port)
    other.root.mkdir()
    proc = other.node().start()
    assert proc.popen is not None
    assert proc.popen.wait(30) == 1
    assert f"cannot listen on 127.0.0.1:{chain.rpc_port}" in proc.log()
    assert "Traceback" not in proc.log()


def test_batch_submission_answers_per_tx_and_survives_sigkill(
    chain: ChainFixture, node: Proc
) -> None:
    good = [transfer(chain, n) for n in range(5)]
    forged = msgspec.structs.replace(transfer(chain, 5), amount=999)  # signature does not fit
    body = {"txs": [encode_tx_hex(tx) for tx in good] + [encode_tx_hex(forged), "00ff"]}
    response = httpx.post(f"{chain.rpc_url}/txs/batch", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 5
    assert [r["status"] for r in answer["results"]] == ["accepted"] * 5 + ["rejected"] * 2
    assert answer["results"][5]["reason"] == "bad_signature"
    assert answer["results"][6]["reason"] == "invalid_tx"
    assert answer["results"][6]["field"].startswith("txs.6")
    hashes = [r["tx_hash"] for r in answer["results"][:5]]
    assert node.stop(signal.SIGKILL) == -signal.SIGKILL  # right after the acknowledgement
    restarted = chain.start_node()
    try:
        statuses = [get(chain, f"/txs/{h}")["status"] for h in hashes]
        assert all(s in ("queued", "committed") for s in statuses), statuses
        wait_for(
            "the batch to commit",
            lambda: all(get(chain, f"/txs/{h}")["status"] == "committed" for h in hashes),
        )
        bad = httpx.post(f"{chain.rpc_url}/txs/batch", json={"txs": ["zz"]}, timeout=10)
        assert bad.status_code == 422 and "txs" in bad.text
        huge = httpx.post(
            f"{chain.rpc_url}/txs/batch",
            content=b'{"txs": ["' + b"00" * (3 * 1024 * 1024) + b'"]}',
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert huge.status_code == 413
    finally:
        restarted.stop(signal.SIGKILL)
