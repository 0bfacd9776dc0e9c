"""ConsensusEngine with an in-process verifier double (unit level only)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgspec
import pytest

from authchain.chain import codec, crypto
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.engine import ConsensusEngine, ImportStatus
from authchain.chain.consensus.pool import PoolRejected
from authchain.chain.consensus.store import Commit
from authchain.chain.state import (
    InvalidTx,
    Validator,
    get_account,
    get_artefact,
)
from authchain.chain.storage import MemBlockStore
from authchain.chain.types import (
    ArtefactMetadata,
    EvidenceHash,
    EvidenceRef,
    SigScheme,
    TxRegisterModel,
    TxTransfer,
)
from authchain.chain.validation.ml import (
    ArtefactClaim,
    MlValidity,
    make_claim,
)
from authchain.floors import Floors
from tests.support.chain import (
    CHAIN,
    OWNER,
    PROFILE,
    T0,
    VALIDATOR,
    FakeVerifier,
    aid,
    build_block,
    make_engine,
    make_genesis,
    metric,
    register,
)


async def test_watermarked_registration_is_committed() -> None:
    engine = make_engine()
    tx_hash = engine.submit_tx(register(1, 0))
    result = await engine.propose_block(VALIDATOR, T0 + 5_000)
    assert result is not None and result.status is ImportStatus.ACCEPTED
    assert engine.height == 1
    meta = get_artefact(engine.view(), aid(1))
    assert meta is not None and meta.owner == OWNER.account and meta.registered_at == 1
    assert tx_hash not in engine.pool
    assert metric(engine, "txpool_size") == len(engine.pool) == 0
    assert engine.store.get_tx_location(tx_hash) == (1, 0)
    assert get_account(engine.view(), OWNER.account).nonce == 1


async def test_block_with_failing_artefact_is_rejected_and_counted() -> None:
    verifier = FakeVerifier(failing={aid(1)})
    engine = make_engine(verifier)
    block = build_block(engine, [register(1, 0)], T0 + 5_000)
    result = await engine.import_block(block, T0 + 5_000)
    assert result.status is ImportStatus.INVALID
    assert result.reason is not None and "ml_auth_failed" in result.reason
    assert engine.height == 0
    assert metric(engine, "consensus_blocks_rejected_ml_total") == 1
    again = await engine.import_block(block, T0 + 6_000)
    assert again.status is ImportStatus.INVALID
    assert verifier.calls == 1  # remembered as invalid, and the verdict is cached anyway


async def test_proposer_drops_failing_registration_and_records_why() -> None:
    engine = make_engine(FakeVerifier(failing={aid(1)}))
    bad = engine.submit_tx(register(1, 0))
    good = engine.submit_tx(register(2, 1))
    result = await engine.propose_block(VALIDATOR, T0 + 5_000)
    assert result is not None and result.status is ImportStatus.ACCEPTED
    # the good registration had nonce 1 and the failed one nonce 0: it waits for nonce 0
    assert bad not in engine.pool
    rejection = engine.get_rejection(bad)
    assert rejection is not None and rejection.reason == "watermark_not_found"
    assert good in engine.pool
    assert get_artefact(engine.view(), aid(1)) is None


async def test_artefact_cap_is_enforced() -> None:
    engine = make_engine(cap=2)
    block = build_block(engine, [register(1, 0), register(2, 1), register(3, 2)], T0 + 5_000)
    result = await engine.import_block(block, T0 + 5_000)
    assert result.status is ImportStatus.INVALID
    assert result.reason is not None and "too_many_artefacts" in result.reason


async def test_proposer_respects_the_cap() -> None:
    engine = make_engine(cap=2)
    for n in range(3):
        engine.submit_tx(register(n + 1, n))
    await engine.propose_block(VALIDATOR, T0 + 5_000)
    assert len(engine.store.get_block(engine.tip).txs) == 2  # type: ignore[union-attr]
    await engine.propose_block(VALIDATOR, T0 + 10_000)
    assert get_artefact(engine.view(), aid(3)) is not None


async def test_duplicate_aid_inside_a_block_is_rejected() -> None:
    engine = make_engine()
    first = register(1, 0)
    second = crypto.sign_tx(
        TxRegisterModel(OWNER.account, aid(1), first.evidence, fee=0, nonce=1), OWNER, CHAIN
    )
    result = await engine.import_block(build_block(engine, [first, second], T0 + 1), T0 + 1)
    assert result.status is ImportStatus.INVALID
    assert result.reason is not None and "duplicate_aid" in result.reason


async def test_already_registered_aid_is_rejected() -> None:
    engine = make_engine()
    engine.submit_tx(register(1, 0))
    await engine.propose_block(VALIDATOR, T0 + 5_000)
    again = crypto.sign_tx(
        TxRegisterModel(OWNER.account, aid(1), register(1, 0).evidence, fee=0, nonce=1),
        OWNER,
        CHAIN,
    )
    with pytest.raises(InvalidTx, match="aid_already_registered"):
        engine.submit_tx(again)
    result = await engine.import_block(build_block(engine, [again], T0 + 10_000), T0 + 10_000)
    assert result.status is ImportStatus.INVALID
    assert result.reason is not None and "aid_already_registered" in result.reason


async def test_ml_unavailable_defers_block_then_accepts() -> None:
    verifier = FakeVerifier(down=True)
    engine = make_engine(verifier)
    block = build_block(engine, [register(1, 0)], T0 + 5_000)
    result = await engine.import_block(block, T0 + 5_000)
    assert result.status is ImportStatus.DEFERRED
    assert engine.height == 0
    assert metric(engine, "consensus_blocks_rejected_ml_total") == 0
    assert metric(engine, "ml_verifier_calls_total", result="unavailable") == 1
    verifier.down = False
    result = await engine.import_block(block, T0 + 6_000)
    assert result.status is ImportStatus.ACCEPTED
    assert engine.height == 1


async def test_proposer_leaves_registration_pooled_while_ml_is_down() -> None:
    verifier = FakeVerifier(down=True)
    engine = make_engine(verifier)
    transfer = crypto.sign_tx(TxTransfer(OWNER.account, VALIDATOR.account, 5, 0, 1), OWNER, CHAIN)
    reg = engine.submit_tx(register(1, 0))
    engine.submit_tx(transfer)
    result = await engine.propose_block(VALIDATOR, T0 + 5_000)
    assert result is not None and result.status is ImportStatus.ACCEPTED
    assert engine.store.get_block(engine.tip).txs == ()  # type: ignore[union-attr]
    assert reg in engine.pool and engine.get_rejection(reg) is None
    verifier.down = False
    await engine.propose_block(VALIDATOR, T0 + 10_000)
    assert get_artefact(engine.view(), aid(1)) is not None
    assert get_account(engine.view(), VALIDATOR.account).balance == 5


async def test_a_block_that_does_not_extend_the_tip_is_refused_no_forks() -> None:
    a = make_engine()
    b = make_engine()
    a.submit_tx(register(1, 0))
    await a.propose_block(VALIDATOR, T0 + 1_000)
    b.submit_tx(register(2, 0))
    await b.propose_block(VALIDATOR, T0 + 1_500)
    rival = b.store.get_block(b.tip)
    assert rival is not None
    result = await a.import_block(rival, T0 + 10_000)
    assert result.status is ImportStatus.ORPHAN and "does not extend the tip" in (
        result.reason or ""
    )
    assert get_artefact(a.view(), aid(2)) is None and a.height == 1


async def test_a_tampered_signature_does_not_blacklist_the_honest_block() -> None:
    proposer = make_engine()
    follower = make_engine()
    proposer.submit_tx(register(1, 0))
    await proposer.propose_block(VALIDATOR, T0 + 1_000)
    honest = proposer.store.get_block(proposer.tip)
    assert honest is not None
    tampered = msgspec.structs.replace(honest, signature=b"\x01" * len(honest.signature))
    bad = await follower.import_block(tampered, T0 + 2_000)
    assert bad.status is ImportStatus.INVALID and "bad_block_signature" in (bad.reason or "")
    good = await follower.import_block(honest, T0 + 2_000)
    assert good.status is ImportStatus.ACCEPTED and follower.tip == proposer.tip


async def test_orphan_and_known_blocks() -> None:
    engine = make_engine()
    engine.submit_tx(register(1, 0))
    result = await engine.propose_block(VALIDATOR, T0 + 1_000)
    assert result is not None
    block = engine.store.get_block(result.block_hash)
    assert block is not None
    assert (await engine.import_block(block, T0 + 2_000)).status is ImportStatus.KNOWN
    other = make_engine()
    orphan_parent = build_block(other, [], T0 + 1)
    await other.import_block(orphan_parent, T0 + 1)
    orphan = build_block(other, [], T0 + 2)
    assert (await engine.import_block(orphan, T0 + 3)).status is ImportStatus.ORPHAN


async def test_pool_checks() -> None:
    engine = make_engine(impersonation=False)
    with pytest.raises(InvalidTx, match="unsigned_not_allowed"):
        engine.submit_tx(register(1, 0, signed=False))
    tx = register(1, 0)
    engine.submit_tx(tx)
    with pytest.raises(PoolRejected, match="duplicate"):
        engine.submit_tx(tx)
    with pytest.raises(PoolRejected, match="nonce_taken"):
        engine.submit_tx(register(2, 0))
    for n in range(2, 6):
        engine.submit_tx(register(n, n - 1))
    with pytest.raises(PoolRejected, match="pool_full"):  # nothing cheaper or stuck to evict
        engine.submit_tx(register(9, 5))
    forged = crypto.sign_tx(register(7, 9, signed=False), OWNER, CHAIN + "-other")
    engine.pool.forget([codec.compute_tx_hash(tx)])
    with pytest.raises(InvalidTx, match="bad_signature"):
        engine.submit_tx(forged)


async def test_pool_survives_a_new_engine_on_the_same_store() -> None:
    store = MemBlockStore()
    engine = make_engine(store=store)
    tx_hash = engine.submit_tx(register(1, 0))
    again = make_engine(store=store)
    assert tx_hash in again.pool
    assert again.tip == engine.tip


async def test_store_of_another_chain_is_refused() -> None:
    from authchain.chain.errors import StorageError

    store = MemBlockStore()
    make_engine(store=store, impersonation=True)
    with pytest.raises(StorageError, match="another chain"):
        make_engine(store=store, impersonation=False)


# --- files not uploaded yet; lineage; the registrations a claim is checked against ----------


async def test_a_registration_waits_for_its_files_then_commits() -> None:
    verifier = FakeVerifier(missing={aid(1)})
    engine = make_engine(verifier)
    tx_hash = engine.submit_tx(register(1, 0))
    for i in range(3):
        await engine.propose_block(VALIDATOR, T0 + 1_000 * (i + 1))
    assert engine.height == 3 and tx_hash in engine.pool  # unavailable is not invalid
    assert engine.get_rejection(tx_hash) is None
    assert metric(engine, "consensus_blocks_rejected_total", reason="ml_auth_failed") == 0
    calls = verifier.calls
    await engine.propose_block(VALIDATOR, T0 + 4_000)
    assert verifier.calls > calls  # "not found" is never cached: asked again
    verifier.missing.clear()  # the files arrive
    await engine.propose_block(VALIDATOR, T0 + 5_000)
    assert engine.store.get_tx_location(tx_hash) is not None
    assert get_artefact(engine.view(), aid(1)) is not None


async def test_a_registration_whose_files_never_arrive_expires_with_a_reason() -> None:
    verifier = FakeVerifier(missing={aid(1)})
    engine = make_engine(verifier, config=ConsensusConfig(max_pool_txs=5, files_wait_blocks=3))
    tx_hash = engine.submit_tx(register(1, 0))
    for i in range(3):
        await engine.propose_block(VALIDATOR, T0 + 1_000 * (i + 1))
        assert tx_hash in engine.pool
    await engine.propose_block(VALIDATOR, T0 + 4_000)
    assert tx_hash not in engine.pool
    rejection = engine.get_rejection(tx_hash)
    assert rejection is not None and rejection.reason == "files_unavailable"
    assert "artefact_not_found for 3 blocks" in rejection.detail


async def test_claims_are_checked_against_earlier_registrations_of_the_same_class_count() -> None:
    verifier = FakeVerifier()
    engine = make_engine(verifier)
    engine.submit_tx(register(1, 0))
    await engine.propose_block(VALIDATOR, T0 + 1_000)
    evidence = EvidenceRef("multi_factor_v2", EvidenceHash(b"\x99" * 32), PROFILE, num_classes=7)
    engine.submit_tx(register(2, 1))
    engine.submit_tx(
        crypto.sign_tx(TxRegisterModel(OWNER.account, aid(3), evidence, 0, 2), OWNER, CHAIN)
    )
    await engine.propose_block(VALIDATOR, T0 + 2_000)
    by_aid = {c.aid: c for c in verifier.claims if isinstance(c, ArtefactClaim)}
    assert [r.aid for r in by_aid[aid(1)].registered] == []  # the first one: nothing earlier
    assert [r.aid for r in by_aid[aid(2)].registered] == [aid(1)]  # not aid(3): same block
    assert by_aid[aid(3)].registered == ()  # 7 classes: no earlier model could be its parent


async def test_lineage_from_v_auth_is_recorded_and_committed_to_by_the_state_root() -> None:
    verifier = FakeVerifier(lineage={aid(2): (aid(1),)})
    engine = make_engine(verifier)
    engine.submit_tx(register(1, 0))
    await engine.propose_block(VALIDATOR, T0 + 1_000)
    engine.submit_tx(register(2, 1))
    result = await engine.propose_block(VALIDATOR, T0 + 2_000)
    assert result is not None and result.status is ImportStatus.ACCEPTED
    child = get_artefact(engine.view(), aid(2))
    assert child is not None and child.parents == (aid(1),)
    first, block = engine.store.get_block_by_height(1), engine.store.get_block(engine.tip)
    assert first is not None and block is not None

    # a validator whose verifier finds no lineage computes another state root: it refuses
    other = make_engine(FakeVerifier())
    assert (await other.import_block(first, T0 + 5_000)).status is ImportStatus.ACCEPTED
    refused = await other.import_block(block, T0 + 5_000)
    assert refused.status is ImportStatus.INVALID and "bad_state_root" in (refused.reason or "")
    agreeing = make_engine(FakeVerifier(lineage={aid(2): (aid(1),)}))
    await agreeing.import_block(first, T0 + 5_000)
    assert (await agreeing.import_block(block, T0 + 5_000)).status is ImportStatus.ACCEPTED


def test_the_genesis_hash_commits_to_the_floors_and_the_block_limits() -> None:
    base = make_engine().genesis_hash
    stricter = dataclasses.replace(make_genesis(), floors=Floors(trigger_p_log2=80))
    ml = MlValidity(FakeVerifier())
    config = ConsensusConfig(max_pool_txs=5, max_artefacts_per_block=2)
    assert ConsensusEngine(MemBlockStore(), stricter, config, ml).genesis_hash != base
    bigger = ConsensusConfig(max_pool_txs=5, max_artefacts_per_block=2, max_block_txs=2000)
    assert ConsensusEngine(MemBlockStore(), make_genesis(), bigger, ml).genesis_hash != base
    more_artefacts = ConsensusConfig(max_pool_txs=5, max_artefacts_per_block=3)
    assert ConsensusEngine(MemBlockStore(), make_genesis(), more_artefacts, ml).genesis_hash != base
    pool_only = ConsensusConfig(max_pool_txs=6, max_artefacts_per_block=2)  # local policy
    assert ConsensusEngine(MemBlockStore(), make_genesis(), pool_only, ml).genesis_hash == base


async def test_a_cached_verdict_is_only_reused_against_the_same_earlier_registrations() -> None:
    verifier = FakeVerifier()
    ml = MlValidity(verifier)
    claim = make_claim(register(2, 0), [])
    await ml.verify_claim(claim)
    await ml.verify_claim(make_claim(register(2, 0), []))
    assert verifier.calls == 1
    earlier = ArtefactMetadata(aid(1), OWNER.account, register(1, 0).evidence, registered_at=1)
    widened = make_claim(register(2, 0), [earlier])
    assert widened.registered and widened.cache_key != claim.cache_key
    await ml.verify_claim(widened)  # a new registration since: the verdict may differ
    assert verifier.calls == 2


async def test_a_block_from_the_future_is_deferred_then_accepted() -> None:
    proposer = make_engine()
    follower = make_engine()
    await proposer.propose_block(VALIDATOR, T0 + 60_000)
    block = proposer.store.get_block(proposer.tip)
    assert block is not None
    early = await follower.import_block(block, T0 + 1_000)  # the follower's clock is behind
    assert early.status is ImportStatus.DEFERRED and "from_the_future" in (early.reason or "")
    later = await follower.import_block(block, T0 + 60_000)  # not blacklisted
    assert later.status is ImportStatus.ACCEPTED


async def test_a_proposal_full_of_ml_dsa_txs_fits_the_size_limit_with_its_signature() -> None:
    """The size estimate counts the block signature (3,309 bytes for ML-DSA-65)."""
    key = crypto.KeyPair.from_seed(SigScheme.ML_DSA_65, b"\x09" * 32)
    sender = crypto.KeyPair.from_seed(SigScheme.ML_DSA_65, b"\x0a" * 32)
    genesis = dataclasses.replace(
        make_genesis(),
        validators=(Validator(key.account, key.scheme, key.public_key),),
        accounts=((sender.account, 1_000),),
    )
    config = ConsensusConfig(max_pool_txs=100, max_block_size_bytes=30_000)
    ml = MlValidity(FakeVerifier())
    engine = ConsensusEngine(MemBlockStore(), genesis, config, ml)
    for nonce in range(10):  # ~5.3 KB each: 5 fit beside the header and signature
        tx = TxTransfer(sender.account, key.account, 1, 0, nonce)
        engine.submit_tx(crypto.sign_tx(tx, sender, CHAIN))
    result = await engine.propose_block(key, T0 + 1_000)
    assert result is not None and result.status is ImportStatus.ACCEPTED, result
    block = engine.store.get_block(engine.tip)
    assert block is not None and 0 < len(block.txs) < 10
    assert len(codec.encode(block)) <= config.max_block_size_bytes


async def test_a_claim_the_verifier_cannot_answer_is_retried_with_backoff() -> None:
    """Poison verification: a claim that never gets an answer must not cost every block."""
    verifier = FakeVerifier(down=True)
    engine = make_engine(verifier)
    engine.submit_tx(register(1, 0))
    calls = []
    for i in range(7):
        await engine.propose_block(VALIDATOR, T0 + 1_000 * (i + 1))
        calls.append(verifier.calls)
    assert calls == [1, 2, 2, 3, 3, 3, 3]  # tried at heights 1, 2, 4, then 8
    assert engine.height == 7  # blocks kept coming
    verifier.down = False
    for i in range(7, 9):
        await engine.propose_block(VALIDATOR, T0 + 1_000 * (i + 1))
    assert get_artefact(engine.view(), aid(1)) is not None  # unavailable is not invalid


class CountingStore(MemBlockStore):
    """Counts commits; each one takes a while, as a synced RocksDB write does."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    def commit(self, commit: Commit) -> None:
        time.sleep(0.005)
        self.commits += 1
        super().commit(commit)


def signed_transfer(nonce: int) -> TxTransfer:
    tx = TxTransfer(OWNER.account, VALIDATOR.account, 1, 0, nonce)
    return crypto.sign_tx(tx, OWNER, CHAIN)


async def test_concurrent_submissions_share_durable_writes() -> None:
    """Group commit: 40 single-tx submissions at once cost far fewer than 40 writes, and every
    acknowledged tx is in the store when its submission returns."""
    store = CountingStore()
    config = ConsensusConfig(max_pool_txs=100, max_nonce_gap=64)
    engine = make_engine(store=store, config=config)
    before = store.commits
    txs = [signed_transfer(n) for n in range(40)]

    async def submit(tx: TxTransfer) -> None:
        [result] = await engine.submit_txs([tx])
        assert result == codec.compute_tx_hash(tx)
        assert codec.compute_tx_hash(tx) in {h for h, _ in store.pool_txs()}

    await asyncio.gather(*(submit(tx) for tx in txs))
    assert store.commits - before < 20
    assert len(engine.pool) == 40


async def test_a_batch_reports_each_tx_and_a_block_never_overtakes_its_pool_write() -> None:
    store = CountingStore()
    engine = make_engine(store=store, config=ConsensusConfig(max_pool_txs=100))
    forged = msgspec.structs.replace(signed_transfer(1), amount=2)  # signature no longer fits
    results = await engine.submit_txs([signed_transfer(0), forged, signed_transfer(0)])
    assert results[0] == codec.compute_tx_hash(signed_transfer(0))
    assert isinstance(results[1], InvalidTx) and results[1].reason == "bad_signature"
    assert isinstance(results[2], PoolRejected)  # the same tx twice
    # a submission whose write is still in flight while the proposer commits a block with it
    pending = asyncio.ensure_future(engine.submit_txs([signed_transfer(1)]))
    await asyncio.sleep(0)  # its write has started in a worker thread
    result = await engine.propose_block(VALIDATOR, T0 + 1000)
    await pending
    assert result is not None and result.status is ImportStatus.ACCEPTED
    assert engine.height == 1 and len(engine.pool) == 0
    assert list(store.pool_txs()) == []  # no stale pool record of a committed tx
