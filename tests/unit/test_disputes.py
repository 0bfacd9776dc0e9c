"""Disputes at the chain level (`TxDispute`, `state.check_dispute`, the pipeline): an owner
overturns a later registration that carries one of his committed spare watermarks. Each state
rule refuses a dispute with its own reason (`test_invalid_dispute_*`), at CheckTx and in a
block; V_auth's verdict (a verifier double here; the real one is in
`tests/integration/test_disputes.py`) either overturns the suspect or leaves a paid, failed
dispute that changes nothing else."""

from __future__ import annotations

import pytest

from authchain.chain import codec, crypto, queries
from authchain.chain.consensus.engine import ConsensusEngine, ImportStatus
from authchain.chain.errors import InvalidField
from authchain.chain.state import InvalidTx, get_account, get_artefact, get_dispute
from authchain.chain.storage import MemBlockStore
from authchain.chain.types import (
    EvidenceHash,
    EvidenceRef,
    SigScheme,
    Transaction,
    TxDispute,
    TxRegisterModel,
)
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
)

THIEF = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x0d" * 32)
SPARES = tuple(EvidenceHash(bytes([200 + i]) * 32) for i in range(3))


def registration(key: crypto.KeyPair, n: int, nonce: int, spares: bool = True) -> TxRegisterModel:
    evidence = EvidenceRef(
        "multi_factor_v2", EvidenceHash(bytes([n + 100]) * 32), PROFILE,
        spares=SPARES if spares else (),
    )  # fmt: skip
    return crypto.sign_tx(TxRegisterModel(key.account, aid(n), evidence, 0, nonce), key, CHAIN)


def dispute(
    suspect: int = 2, spare: int = 0, *, key: crypto.KeyPair = OWNER, earlier: int = 1,
    nonce: int = 1, spare_hash: EvidenceHash | None = None,
) -> TxDispute:  # fmt: skip
    tx = TxDispute(
        key.account, aid(earlier), aid(suspect), spare, spare_hash or SPARES[spare], 0, nonce
    )
    return crypto.sign_tx(tx, key, CHAIN)


async def commit(engine: ConsensusEngine, *txs: TxRegisterModel | TxDispute, at: int) -> None:
    for tx in txs:
        engine.submit_tx(tx)
    result = await engine.propose_block(VALIDATOR, T0 + at)
    assert result is not None and result.status is ImportStatus.ACCEPTED, result


async def owner_then_thief(verifier: FakeVerifier) -> ConsensusEngine:
    """The owner's model (aid 1, three spares) at height 1, the thief's copy (aid 2) at 2."""
    engine = make_engine(verifier)
    await commit(engine, registration(OWNER, 1, 0), at=1_000)
    await commit(engine, registration(THIEF, 2, 0, spares=False), at=2_000)
    return engine


async def test_an_upheld_dispute_overturns_the_copy_and_spends_the_spare() -> None:
    engine = await owner_then_thief(FakeVerifier(copies={aid(2)}))
    tx = dispute()
    await commit(engine, tx, at=3_000)
    view = engine.view()
    copy, original = get_artefact(view, aid(2)), get_artefact(view, aid(1))
    assert copy is not None and copy.overturned_by is not None
    assert copy.overturned_by.earlier_aid == aid(1) and copy.overturned_by.spare_index == 0
    assert copy.overturned_by.dispute_tx == codec.compute_tx_hash(tx)
    assert copy.overturned_by.height == 3
    assert original is not None and original.spent_spares == (0,)
    assert original.overturned == (aid(2),)
    assert original.overturned_by is None  # the owner's stands
    outcome = get_dispute(view, codec.compute_tx_hash(tx))
    assert outcome is not None and outcome.upheld and outcome.reason == ""
    # what V_auth measured is this node's record, next to the verdict (not in state)
    public = queries.dispute_public(engine.app, codec.compute_tx_hash(tx))
    assert public is not None and public.upheld
    assert (public.earlier_log2_p_value, public.earlier_log2_feat_p_value) == (-90.5, -200.25)
    assert public.suspect_log2_p_value == -80.0
    assert public.detail == "the suspect carries the spare"
    store = engine.store
    assert isinstance(store, MemBlockStore)
    restarted = make_engine(FakeVerifier(), store=store)  # it survives a restart
    assert queries.dispute_public(restarted.app, codec.compute_tx_hash(tx)) == public


async def test_a_failed_dispute_pays_its_fee_and_changes_nothing_else() -> None:
    engine = await owner_then_thief(FakeVerifier())  # the suspect carries no spare of his
    before = get_account(engine.view(), OWNER.account).nonce
    tx = dispute()
    await commit(engine, tx, at=3_000)
    view = engine.view()
    assert engine.store.get_tx_location(codec.compute_tx_hash(tx)) == (3, 0)  # in the block
    copy, original = get_artefact(view, aid(2)), get_artefact(view, aid(1))
    assert copy is not None and copy.overturned_by is None
    assert original is not None and original.spent_spares == ()
    assert get_account(view, OWNER.account).nonce == before + 1
    public = queries.dispute_public(engine.app, codec.compute_tx_hash(tx))
    assert public is not None and not public.upheld
    assert public.reason == "suspect_does_not_carry" and public.suspect_log2_p_value == -3.0
    outcome = get_dispute(view, codec.compute_tx_hash(tx))
    assert outcome is not None and not outcome.upheld
    assert outcome.reason == "suspect_does_not_carry"


async def test_a_dispute_waits_while_its_files_are_unavailable() -> None:
    verifier = FakeVerifier(copies={aid(2)})
    engine = await owner_then_thief(verifier)
    verifier.down = True
    tx_hash = engine.submit_tx(dispute())
    await engine.propose_block(VALIDATOR, T0 + 3_000)
    assert tx_hash in engine.pool and get_dispute(engine.view(), tx_hash) is None
    verifier.down = False
    for at in range(4_000, 8_000, 1_000):  # it is retried, and upheld
        await engine.propose_block(VALIDATOR, T0 + at)
    assert get_dispute(engine.view(), tx_hash) is not None


async def test_one_dispute_per_registration_per_block() -> None:
    """A second dispute naming the same registration waits for the next block, so no
    dispute's state rules hang on another's verdict in the same block."""
    engine = await owner_then_thief(FakeVerifier(copies={aid(2)}))
    first, second = dispute(spare=0, nonce=1), dispute(spare=1, nonce=2)
    engine.submit_tx(first)
    engine.submit_tx(second)
    await engine.propose_block(VALIDATOR, T0 + 3_000)
    assert engine.store.get_tx_location(codec.compute_tx_hash(first)) == (3, 0)
    assert codec.compute_tx_hash(second) in engine.pool
    await engine.propose_block(VALIDATOR, T0 + 4_000)
    rejection = engine.get_rejection(codec.compute_tx_hash(second))
    assert rejection is not None and rejection.reason == "already_overturned"


async def expect_refused(engine: ConsensusEngine, tx: TxDispute, reason: str, field: str) -> None:
    """Refused at CheckTx with `reason` naming `field`, and a block holding it is invalid."""
    with pytest.raises(InvalidTx) as refused:
        engine.submit_tx(tx)
    assert (refused.value.reason, refused.value.field) == (reason, field)
    block = build_block(engine, [tx], T0 + 9_000)
    result = await engine.import_block(block, T0 + 9_000)
    assert result.status is ImportStatus.INVALID and reason in (result.reason or "")


async def test_invalid_dispute_wrong_evidence_for_the_commitment() -> None:
    engine = await owner_then_thief(FakeVerifier(copies={aid(2)}))
    wrong = dispute(spare_hash=SPARES[1])  # spare 1's file, claimed as spare 0
    await expect_refused(engine, wrong, "spare_commitment_mismatch", "spare_evidence_hash")
    await expect_refused(
        engine, dispute(spare=3, spare_hash=SPARES[0]), "no_such_spare", "spare_index"
    )


async def test_invalid_dispute_spent_spare() -> None:
    engine = await owner_then_thief(FakeVerifier(copies={aid(2), aid(3)}))
    await commit(engine, dispute(), at=3_000)
    await commit(engine, registration(THIEF, 3, 1, spares=False), at=4_000)
    await expect_refused(engine, dispute(suspect=3, nonce=2), "spare_spent", "spare_index")


async def test_invalid_dispute_earlier_registration_that_is_not_earlier() -> None:
    engine = await owner_then_thief(FakeVerifier(copies={aid(1)}))
    backwards = dispute(earlier=2, suspect=1, key=THIEF, nonce=1)  # the thief's is later
    await expect_refused(engine, backwards, "not_earlier", "earlier_aid")


async def test_within_a_block_the_earlier_tx_is_the_earlier_registration() -> None:
    engine = make_engine(FakeVerifier(copies={aid(2)}))
    await commit(engine, registration(OWNER, 1, 0), registration(THIEF, 2, 0, spares=False),
                 at=1_000)  # fmt: skip
    original, copy = get_artefact(engine.view(), aid(1)), get_artefact(engine.view(), aid(2))
    assert original is not None and copy is not None
    assert (original.registered_at, original.registered_index) == (1, 0)
    assert (copy.registered_at, copy.registered_index) == (1, 1)
    await commit(engine, dispute(), at=2_000)
    copy = get_artefact(engine.view(), aid(2))
    assert copy is not None and copy.overturned_by is not None


async def test_invalid_dispute_signer_who_is_not_the_earlier_owner() -> None:
    engine = await owner_then_thief(FakeVerifier(copies={aid(2)}))
    griefer = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x0e" * 32)
    tx = crypto.sign_tx(
        TxDispute(griefer.account, aid(1), aid(2), 0, SPARES[0], 0, 0), griefer, CHAIN
    )
    await expect_refused(engine, tx, "not_earlier_owner", "owner")


async def test_invalid_dispute_of_ones_own_or_an_overturned_or_unknown_registration() -> None:
    engine = await owner_then_thief(FakeVerifier(copies={aid(2)}))
    await commit(engine, registration(OWNER, 4, 1), at=3_000)
    await expect_refused(engine, dispute(suspect=4, nonce=2), "dispute_own_model", "suspect_aid")
    await expect_refused(engine, dispute(suspect=9, nonce=2), "aid_not_registered", "suspect_aid")
    await commit(engine, dispute(nonce=2), at=4_000)
    again = dispute(spare=1, nonce=3)
    await expect_refused(engine, again, "already_overturned", "suspect_aid")


def test_a_dispute_names_two_registrations_and_a_spare_below_the_limit() -> None:
    with pytest.raises(InvalidField) as itself:
        TxDispute(OWNER.account, aid(1), aid(1), 0, SPARES[0], 0, 0)
    assert itself.value.field == "suspect_aid"
    with pytest.raises(InvalidField) as beyond:
        TxDispute(OWNER.account, aid(1), aid(2), 16, SPARES[0], 0, 0)
    assert beyond.value.field == "spare_index"
    tx = dispute()
    assert codec.decode(codec.encode(tx), Transaction) == tx  # tag 4 round-trips
