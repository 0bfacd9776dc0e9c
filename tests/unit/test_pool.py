"""Admission a stranger cannot clog (the attacks of the hardening issue, at unit level; the
server-level versions run in tests/e2e/test_attacks.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from authchain.chain import codec, crypto
from authchain.chain.abci.proto import abci
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.engine import ConsensusEngine
from authchain.chain.consensus.pool import PoolRejected
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.state import get_artefact
from authchain.chain.storage import MemBlockStore
from authchain.chain.types import (
    EvidenceHash,
    EvidenceRef,
    SigScheme,
    TxRegisterModel,
    TxTransfer,
    get_signer,
)
from authchain.chain.validation.ml import MlValidity
from tests.support.abci import ADDRESS, call, init, make_server
from tests.support.chain import (
    CHAIN,
    OWNER,
    PROFILE,
    T0,
    VALIDATOR,
    FakeVerifier,
    aid,
    make_genesis,
)

RICH = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x05" * 32)
SQUATTER = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x06" * 32)


def engine(verifier: FakeVerifier | None = None, **policy: int) -> ConsensusEngine:
    genesis = dataclasses.replace(
        make_genesis(), accounts=((OWNER.account, 1_000), (RICH.account, 1_000))
    )
    config = ConsensusConfig(**{"max_pool_txs": 5, "max_artefacts_per_block": 4, **policy})
    ml = MlValidity(verifier or FakeVerifier())
    return ConsensusEngine(MemBlockStore(), genesis, config, ml, metrics=ChainMetrics())


def transfer(key: crypto.KeyPair, nonce: int, fee: int = 0, amount: int = 1) -> TxTransfer:
    return crypto.sign_tx(
        TxTransfer(key.account, VALIDATOR.account, amount, fee, nonce), key, CHAIN
    )


def claim(key: crypto.KeyPair, n: int, nonce: int, fee: int = 0) -> TxRegisterModel:
    evidence = EvidenceRef("multi_factor_v2", EvidenceHash(bytes([n + 100]) * 32), PROFILE)
    return crypto.sign_tx(TxRegisterModel(key.account, aid(n), evidence, fee, nonce), key, CHAIN)


async def test_pool_squatting_with_gapped_nonces_cannot_lock_anyone_out() -> None:
    chain = engine(max_nonce_gap=3, pool_ttl_blocks=2)
    for nonce in range(1, 4):  # an unfunded key, fee 0, nonces 1..3: never executable
        chain.submit_tx(transfer(SQUATTER, nonce, amount=0))
    with pytest.raises(PoolRejected, match="nonce_too_far"):
        chain.submit_tx(transfer(SQUATTER, 9, amount=0))
    for nonce in range(2):
        chain.submit_tx(transfer(OWNER, nonce))
    assert len(chain.pool) == 5  # full
    # a valid tx from anyone else still gets in: it evicts a squatter's stuck tx
    tx_hash = chain.submit_tx(transfer(RICH, 0))
    assert tx_hash in chain.pool and len(chain.pool) == 5
    squatted = [codec.compute_tx_hash(transfer(SQUATTER, n, amount=0)) for n in range(1, 4)]
    evicted = [h for h in squatted if h not in chain.pool]
    assert evicted == [squatted[-1]]  # the newest of the cheapest stuck txs
    assert chain.get_rejection(evicted[0]).reason == "evicted"  # type: ignore[union-attr]
    # the rest expire after pool_ttl_blocks blocks
    for i in range(3):
        await chain.propose_block(VALIDATOR, T0 + 1_000 * (i + 1))
    assert len(chain.pool) == 0
    for stuck in squatted[:-1]:
        assert chain.get_rejection(stuck).reason == "expired"  # type: ignore[union-attr]


async def test_one_sender_cannot_take_the_pool() -> None:
    chain = engine(max_pool_txs=100, max_pool_txs_per_sender=3)
    for nonce in range(3):
        chain.submit_tx(transfer(OWNER, nonce))
    with pytest.raises(PoolRejected, match="sender_full"):
        chain.submit_tx(transfer(OWNER, 3))


async def test_pending_txs_must_be_covered_by_the_balance() -> None:
    chain = engine(max_pool_txs=100)
    chain.submit_tx(transfer(OWNER, 0, amount=600))
    with pytest.raises(PoolRejected, match="pending_spend_exceeds_balance"):
        chain.submit_tx(transfer(OWNER, 1, amount=600))


async def test_proposal_order_is_fee_then_arrival_within_each_senders_nonce_order() -> None:
    chain = engine(max_pool_txs=100)
    low = [transfer(OWNER, 0, fee=1), transfer(OWNER, 1, fee=9)]
    high = [transfer(RICH, 1, fee=5), transfer(RICH, 0, fee=5)]
    for tx in [*low, *high]:
        chain.submit_tx(tx)
    order = [(tx.nonce, tx.fee) for tx in chain.pool.candidates()]
    assert order == [(0, 5), (1, 5), (0, 1), (1, 9)]


async def test_both_drivers_propose_in_one_order() -> None:
    """CometBFT's PrepareProposal (txs in its mempool's order) proposes what the embedded
    pool would, in the same order: one function decides it for both."""
    arrivals = [
        transfer(OWNER, 0, fee=1), transfer(RICH, 2, fee=7), transfer(OWNER, 1, fee=9),
        transfer(RICH, 1, fee=5), transfer(OWNER, 2, fee=0), transfer(RICH, 0, fee=5),
    ]  # fmt: skip
    chain = engine(max_pool_txs=100)
    for tx in arrivals:
        chain.submit_tx(tx)
    embedded = chain.pool.candidates()
    assert [(get_signer(tx), tx.nonce) for tx in embedded] == [
        (RICH.account, 0), (RICH.account, 1), (RICH.account, 2),  # fee 5 first, then 5, 7
        (OWNER.account, 0), (OWNER.account, 1), (OWNER.account, 2),
    ]  # fmt: skip
    server = make_server(accounts=((OWNER.account, 1_000), (RICH.account, 1_000)))
    await init(server)
    request = abci.RequestPrepareProposal(
        txs=[codec.encode(tx) for tx in arrivals], max_tx_bytes=1 << 20, height=1,
        proposer_address=ADDRESS,
    )  # fmt: skip
    prepared = (await call(server, prepare_proposal=request)).prepare_proposal
    assert list(prepared.txs) == [codec.encode(tx) for tx in embedded]


async def test_a_gapped_claim_on_a_victims_aid_does_not_block_the_victim() -> None:
    """Aid hijack: a squatter's never-executable registration names the victim's aid."""
    chain = engine(max_pool_txs=100)
    chain.submit_tx(claim(SQUATTER, 1, nonce=2))  # gapped: never executable
    victim = chain.submit_tx(claim(OWNER, 1, nonce=0))  # admitted all the same
    await chain.propose_block(VALIDATOR, T0 + 1_000)
    meta = get_artefact(chain.view(), aid(1))
    assert meta is not None and meta.owner == OWNER.account and victim not in chain.pool


async def test_competing_claims_on_one_aid_the_first_valid_one_wins() -> None:
    verifier = FakeVerifier(failing_owners={RICH.account})
    chain = engine(verifier, max_pool_txs=100)
    forged = chain.submit_tx(claim(RICH, 1, nonce=0, fee=50))  # pays more: tried first
    honest = chain.submit_tx(claim(OWNER, 1, nonce=0))
    await chain.propose_block(VALIDATOR, T0 + 1_000)
    assert chain.get_rejection(forged).reason == "watermark_not_found"  # type: ignore[union-attr]
    assert honest in chain.pool  # not dropped: the other claim might have failed V_auth
    await chain.propose_block(VALIDATOR, T0 + 2_000)
    meta = get_artefact(chain.view(), aid(1))
    assert meta is not None and meta.owner == OWNER.account


async def test_rejection_records_are_pruned_to_a_bound() -> None:
    """Strangers decide how many txs get dropped: the records of it must stay bounded."""
    forgers = [crypto.KeyPair.from_seed(SigScheme.ED25519, bytes([40 + n]) * 32) for n in range(5)]
    verifier = FakeVerifier(failing_owners={k.account for k in forgers})
    chain = engine(verifier, max_pool_txs=100, max_rejections=3)
    hashes = [chain.submit_tx(claim(key, n + 1, nonce=0)) for n, key in enumerate(forgers)]
    for i in (1, 2):  # 4 claims a block (max_artefacts_per_block)
        await chain.propose_block(VALIDATOR, T0 + 1_000 * i)
    assert all(chain.get_rejection(h) is not None for h in hashes)  # 5 dropped, recorded
    for i in range(3, 65):  # pruning runs every 64 blocks
        await chain.propose_block(VALIDATOR, T0 + 1_000 * i)
    assert len(list(chain.store.iter_rejections())) == 3


def test_metric_labels_come_from_a_fixed_set() -> None:
    """A reason string from outside (the ML service, a node) must not mint time series."""
    from authchain.chain.app import REASONS
    from authchain.chain.metrics.prometheus import metric_reason

    assert metric_reason("bad_nonce", REASONS) == "bad_nonce"
    assert metric_reason("trigger_acc_below_tau_input;feat_p_above_floor", REASONS) == (
        "trigger_acc_below_tau_input"
    )
    assert metric_reason("x" * 10_000, REASONS) == "other"
    assert metric_reason("carries_registered_watermark; DROP TABLE", REASONS) == (
        "carries_registered_watermark"
    )
    assert metric_reason("anything;at all", REASONS) == "other"


async def test_under_cometbft_only_a_tx_that_can_execute_is_admitted() -> None:
    """CometBFT's mempool, which the app cannot evict from, must hold only txs that will
    execute and pay: a gapped nonce is `nonce_gap` there, where the embedded pool (which
    evicts stuck txs) admits it within `max_nonce_gap`."""
    server = make_server(accounts=((OWNER.account, 1_000), (SQUATTER.account, 0)))
    await init(server)

    async def check(tx: TxTransfer) -> tuple[int, str]:
        answer = (await call(server, check_tx=abci.RequestCheckTx(tx=codec.encode(tx)))).check_tx
        return answer.code, json.loads(answer.log)["reason"] if answer.code else ""

    code, reason = await check(transfer(SQUATTER, 1, amount=0))  # the squatter's gapped tx
    assert code != 0 and reason == "nonce_gap"
    code, reason = await check(transfer(OWNER, 2))
    assert code != 0 and reason == "nonce_gap"
    for nonce in range(3):  # in order, each can execute once the one before it does
        assert await check(transfer(OWNER, nonce)) == (0, "")
    code, reason = await check(transfer(OWNER, 4))  # 3 is missing
    assert code != 0 and reason == "nonce_gap"
    chain = engine()  # the embedded pool: within the gap limit, admitted
    chain.submit_tx(transfer(SQUATTER, 1, amount=0))
    assert len(chain.pool) == 1


async def test_checktx_keeps_cometbfts_mempool_within_its_limits() -> None:
    """CometBFT checks its mempool's size and bytes again after CheckTx answers, and drops a tx
    the app admitted if the mempool filled up meanwhile; its sender was told yes. So CheckTx
    counts what the app admitted against those limits and refuses first (`mempool_full`). A
    recheck, of a tx the mempool holds already, is never refused for room."""
    txs = [transfer(OWNER, n) for n in range(4)]
    size = len(codec.encode(txs[0]))
    for limits, fits in [((3, 10**6), 3), ((100, 2 * size + 1), 2)]:  # by count; by bytes
        accounts = ((OWNER.account, 1_000), (RICH.account, 1_000))
        server = make_server(accounts=accounts, mempool=limits)
        await init(server)
        answers = []
        for tx in txs:
            request = abci.RequestCheckTx(tx=codec.encode(tx))
            answers.append((await call(server, check_tx=request)).check_tx)
        assert [a.code for a in answers] == [0] * fits + [1] * (4 - fits)
        refused = json.loads(answers[fits].log)
        assert refused["reason"] == "mempool_full" and "retry later" in refused["detail"]
        # the pool has room again once a tx leaves it
        server.app.pool.forget([codec.compute_tx_hash(txs[0])])
        request = abci.RequestCheckTx(tx=codec.encode(transfer(RICH, 0)))
        assert (await call(server, check_tx=request)).check_tx.code == 0
        # a recheck of a tx the app does not hold (its mirror lost it) is taken though full
        request = abci.RequestCheckTx(tx=codec.encode(txs[0]), type=abci.RECHECK)
        assert (await call(server, check_tx=request)).check_tx.code == 0
        assert len(server.app.pool) == fits + 1


async def test_the_apps_pool_follows_what_cometbfts_mempool_holds() -> None:
    """CometBFT checks "mempool is full" again after CheckTx answers, and may drop a tx the
    app admitted. Its recheck after each commit lists what the mempool holds, in order: a tx
    whose predecessor is gone is refused there (it could never execute), the sender may send
    the lost one again, and what the mempool was not seen to hold for two rounds leaves the
    app's pool, so no sender's nonce stays held by a tx no block can include."""
    server = make_server(accounts=((OWNER.account, 1_000), (RICH.account, 1_000)))
    await init(server)
    pool = server.app.pool

    async def check(tx: TxTransfer, recheck: bool = False) -> tuple[int, str]:
        kind = abci.RECHECK if recheck else abci.NEW
        request = abci.RequestCheckTx(tx=codec.encode(tx), type=kind)
        answer = (await call(server, check_tx=request)).check_tx
        return answer.code, json.loads(answer.log)["reason"] if answer.code else ""

    async def commit(height: int, *txs: TxTransfer) -> None:
        raw = [codec.encode(tx) for tx in txs]
        request = abci.RequestFinalizeBlock(txs=raw, height=height, proposer_address=ADDRESS)
        finalized = (await call(server, finalize_block=request)).finalize_block
        assert [r.code for r in finalized.tx_results] == [0] * len(txs)
        await call(server, commit=abci.RequestCommit())

    owner = [transfer(OWNER, n) for n in range(4)]
    rich = transfer(RICH, 0)
    for tx in [*owner, rich]:
        assert await check(tx) == (0, "")
    # CometBFT's mempool took owner's 0, 2 and 3 (it dropped 1 as full) and not RICH's
    await commit(1)
    assert await check(owner[0], recheck=True) == (0, "")
    for tx in owner[2:]:  # nonce 1 is not in the mempool: neither can execute
        assert await check(tx, recheck=True) == (1, "nonce_gap")
    assert len(pool) == 3  # owner's 0 and 1, and RICH's
    assert await check(owner[1]) == (0, "")  # sent again: taken (the pool still held it)
    assert await check(owner[2]) == (0, "")  # and its successor
    await commit(2, owner[0])
    for tx in owner[1:3]:
        assert await check(tx, recheck=True) == (0, "")
    assert codec.compute_tx_hash(rich) in pool  # one round unseen
    await commit(3)
    for tx in owner[1:3]:
        assert await check(tx, recheck=True) == (0, "")
    # RICH's tx, admitted before block 1, was not in the mempool's rechecks after block 1 or 2
    assert codec.compute_tx_hash(rich) not in pool and len(pool) == 2
    assert await check(rich) == (0, "")  # its sender may send it again
