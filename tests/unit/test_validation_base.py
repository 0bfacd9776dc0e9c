"""Block validity: one test_invalid_* per rule, each on the path production runs.

- Header rules: the embedded driver's `import_block` (its `validate_header`, then the txs, then
  the state root against FinalizeBlock's app hash).
- Tx rules: the block-tx pipeline in every phase: PrepareProposal leaves the tx out,
  ProcessProposal refuses the block naming the tx and the rule, FinalizeBlock skips the tx
  with the rule as its result, and `import_block` refuses the block.
"""

from __future__ import annotations

import msgspec
import pytest

from authchain.chain import codec, crypto
from authchain.chain.app import ProposalLimits
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.engine import ImportStatus
from authchain.chain.state import InvalidTx
from authchain.chain.types import (
    Aid,
    Block,
    BlockHash,
    EvidenceHash,
    EvidenceRef,
    SigScheme,
    Transaction,
    TxRegisterModel,
    TxTransfer,
    WmProfile,
)
from authchain.chain.validation.base import MAX_CLOCK_DRIFT_MS, BlockReason, InvalidBlock
from tests.support.chain import (
    CHAIN,
    OWNER,
    T0,
    VALIDATOR,
    FakeVerifier,
    aid,
    build_block,
    make_engine,
    metric,
    register,
)

NOW = T0 + 5_000
LIMITS = ProposalLimits(max_txs=100, max_bytes=10**6)


async def _import(
    block: Block, config: ConsensusConfig | None = None, verifier: FakeVerifier | None = None
) -> None:
    """Import into a fresh engine (of the chain `config` makes); InvalidBlock with the reason
    it was refused for."""
    engine = make_engine(verifier, config=config)
    result = await engine.import_block(block, NOW)
    if result.status is ImportStatus.ACCEPTED:
        return
    assert result.status is ImportStatus.INVALID, result
    name = "consensus_blocks_rejected_total"
    reasons = [r for r in BlockReason if metric(engine, name, reason=r)]
    assert len(reasons) == 1, (reasons, result)
    raise InvalidBlock(reasons[0], result.reason or "")


async def _expect(
    reason: BlockReason,
    block: Block,
    config: ConsensusConfig | None = None,
    verifier: FakeVerifier | None = None,
) -> None:
    with pytest.raises(InvalidBlock) as info:
        await _import(block, config, verifier)
    assert info.value.reason is reason


def _config(**rules: object) -> ConsensusConfig:
    """The test chain's config (a cap of 2 artefacts a block) with other block rules."""
    return ConsensusConfig.model_validate(
        {"max_pool_txs": 5, "max_artefacts_per_block": 2, **rules}
    )


def _resign(block: Block, **header_changes: object) -> Block:
    header = msgspec.structs.replace(block.header, **header_changes)
    return crypto.sign_block(Block(header, block.txs), VALIDATOR, CHAIN)


def _good(config: ConsensusConfig | None = None) -> Block:
    return build_block(make_engine(config=config), [], NOW)


async def test_valid_block_passes() -> None:
    await _import(_good())
    await _import(build_block(make_engine(), [register(1, 0)], NOW))


async def test_invalid_parent() -> None:
    block = _resign(_good(), parent=BlockHash(b"\x09" * 32))
    result = await make_engine().import_block(block, NOW)  # not an invalid block: an orphan
    assert result.status is ImportStatus.ORPHAN


async def test_invalid_height() -> None:
    await _expect(BlockReason.BAD_HEIGHT, _resign(_good(), height=2))


async def test_invalid_timestamp_not_after_parent() -> None:
    await _expect(BlockReason.BAD_TIMESTAMP, _resign(_good(), timestamp=T0))


async def test_invalid_timestamp_in_the_future() -> None:
    block = _resign(_good(), timestamp=NOW + MAX_CLOCK_DRIFT_MS + 1)
    result = await make_engine().import_block(block, NOW)  # maybe our clock is behind: later
    assert result.status is ImportStatus.DEFERRED and "from_the_future" in (result.reason or "")


async def test_invalid_proposer() -> None:
    intruder = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x07" * 32)
    block = _good()
    header = msgspec.structs.replace(block.header, proposer=intruder.account)
    await _expect(BlockReason.WRONG_PROPOSER, crypto.sign_block(Block(header), intruder, CHAIN))


async def test_invalid_block_signature() -> None:
    block = _good()
    unsigned = msgspec.structs.replace(block, signature=b"\x00" * 64)
    await _expect(BlockReason.BAD_BLOCK_SIGNATURE, unsigned)
    await _expect(
        BlockReason.BAD_BLOCK_SIGNATURE, crypto.sign_block(block, VALIDATOR, CHAIN + "-x")
    )


async def test_invalid_too_many_txs() -> None:
    config = _config(max_block_txs=1)
    block = build_block(make_engine(config=config), [register(1, 0), register(2, 1)], NOW)
    await _expect(BlockReason.TOO_MANY_TXS, block, config)
    with pytest.raises(InvalidBlock) as info:  # ProcessProposal (CometBFT) counts them too
        await make_engine(config=config).app.process_proposal(
            block.txs, 1, VALIDATOR.account
        )  # fmt: skip
    assert info.value.reason is BlockReason.TOO_MANY_TXS


async def test_invalid_too_large() -> None:
    config = _config(max_block_size_bytes=1024)
    block = build_block(make_engine(config=config), [register(n, n) for n in range(1, 10)], NOW)
    assert len(codec.encode(block)) > 1024
    await _expect(BlockReason.TOO_LARGE, block, config)


async def test_invalid_tx_root() -> None:
    block = build_block(make_engine(), [register(1, 0)], NOW)
    await _expect(BlockReason.BAD_TX_ROOT, _resign(block, tx_root=codec.compute_tx_root([])))


async def test_invalid_empty_block() -> None:
    config = _config(allow_empty_blocks=False)
    await _expect(BlockReason.EMPTY_BLOCK, _good(config), config)


async def test_invalid_pos_proof() -> None:
    await _expect(BlockReason.BAD_POS_PROOF, _resign(_good(), pos_proof=b"stake"))


async def test_invalid_state_root() -> None:
    block = build_block(make_engine(), [register(1, 0)], NOW)
    await _expect(BlockReason.BAD_STATE_ROOT, _resign(block, state_root=codec.hash_bytes(b"x")))


# --- the tx rules: the block-tx pipeline, in every phase --------------------------------------


async def _expect_tx(
    reason: str,
    txs: list[Transaction],
    bad: int,
    block_reason: BlockReason = BlockReason.INVALID_TX,
    verifier: FakeVerifier | None = None,
) -> None:
    """`txs[bad]` breaks the rule `reason`; every tx before it is valid."""
    engine = make_engine(verifier)
    app = engine.app
    proposal = await app.prepare_proposal(txs, 1, VALIDATOR.account, LIMITS)
    assert txs[bad] not in proposal.txs and proposal.txs == txs[:bad]
    with pytest.raises(InvalidBlock) as info:
        await app.process_proposal(txs, 1, VALIDATOR.account)
    assert info.value.reason is block_reason
    assert str(info.value).startswith(f"{block_reason}: tx {bad}: {reason}: ")
    finalized = await app.finalize_block(txs, 1, VALIDATOR.account)
    app.discard()
    assert [r.code for r in finalized.results[: bad + 1]] == [0] * bad + [1]
    assert finalized.results[bad].reason == reason
    await _expect(block_reason, build_block(engine, txs, NOW), verifier=verifier)


def _again(tx: TxRegisterModel, nonce: int) -> TxRegisterModel:
    return crypto.sign_tx(msgspec.structs.replace(tx, nonce=nonce, signature=b""), OWNER, CHAIN)


async def test_invalid_duplicate_aid() -> None:
    first = register(1, 0)
    await _expect_tx("duplicate_aid", [first, _again(first, 1)], 1, BlockReason.DUPLICATE_AID)


async def test_a_failed_registration_does_not_claim_its_aid_in_the_block() -> None:
    """Only applied txs count: the second registration of an aid whose first one failed (a
    bad nonce here) is no duplicate, in FinalizeBlock as in the proposer's selection."""
    first, second = _again(register(1, 0), 5), register(1, 0)
    app = make_engine().app
    finalized = await app.finalize_block([first, second], 1, VALIDATOR.account)
    assert [(r.code, r.reason) for r in finalized.results] == [(1, "bad_nonce"), (0, "")]
    proposal = await app.prepare_proposal([first, second], 1, VALIDATOR.account, LIMITS)
    assert proposal.txs == [second]


async def test_invalid_too_many_artefacts() -> None:
    txs: list[Transaction] = [register(n, n - 1) for n in (1, 2, 3)]  # the cap is 2
    await _expect_tx("too_many_artefacts", txs, 2, BlockReason.TOO_MANY_ARTEFACTS)


async def test_invalid_ml_auth_failed() -> None:
    verifier = FakeVerifier(failing={aid(2)})
    txs: list[Transaction] = [register(1, 0), register(2, 1)]
    await _expect_tx("ml_auth_failed", txs, 1, BlockReason.ML_AUTH_FAILED, verifier)


async def test_v_auth_runs_only_on_blocks_that_pass_the_cheap_rules() -> None:
    verifier = FakeVerifier(failing={aid(1)})
    app = make_engine(verifier).app
    with pytest.raises(InvalidBlock, match="bad_nonce"):
        await app.process_proposal([register(1, 0), register(2, 5)], 1, VALIDATOR.account)
    assert verifier.calls == 0


async def test_invalid_tx_bad_nonce() -> None:
    await _expect_tx("bad_nonce", [register(1, 0), register(2, 5)], 1)


async def test_invalid_tx_bad_signature() -> None:
    tx = msgspec.structs.replace(register(1, 0), fee=1)  # signature no longer covers it
    await _expect_tx("bad_signature", [tx], 0)


async def test_invalid_tx_insufficient_balance() -> None:
    tx = crypto.sign_tx(TxTransfer(OWNER.account, VALIDATOR.account, 10**6, 0, 0), OWNER, CHAIN)
    await _expect_tx("insufficient_balance", [tx], 0)


async def test_an_undecodable_tx_is_skipped_in_a_decided_block() -> None:
    app = make_engine().app
    finalized = await app.finalize_block([None, register(1, 0)], 1, VALIDATOR.account)
    assert [(r.code, r.reason) for r in finalized.results] == [(1, "invalid_tx"), (0, "")]


# --- the chain's floors: each one refused at CheckTx (naming the field) and in every phase ---


def _claim(**change: object) -> TxRegisterModel:
    profile = {"tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -0.05, "logit_band_high": 0.05}
    strength = {"trigger_count": 100, "signature_bits": 2048, "num_classes": 10}
    profile.update({k: v for k, v in change.items() if k in profile})  # type: ignore[misc]
    strength.update({k: v for k, v in change.items() if k in strength})  # type: ignore[misc]
    evidence = EvidenceRef(
        "multi_factor_v2", EvidenceHash(b"\x77" * 32), WmProfile(**profile),
        trigger_count=strength["trigger_count"], signature_bits=strength["signature_bits"],
        num_classes=strength["num_classes"],
    )  # fmt: skip
    tx = TxRegisterModel(OWNER.account, Aid(b"\x66" * 32), evidence, fee=0, nonce=0)
    return crypto.sign_tx(tx, OWNER, CHAIN)


async def _expect_below_floor(field: str, **change: object) -> None:
    tx = _claim(**change)
    engine = make_engine()
    with pytest.raises(InvalidTx) as info:  # CheckTx
        engine.submit_tx(tx)
    assert info.value.reason == "claim_below_floor" and info.value.field == f"evidence.{field}"
    assert len(engine.pool) == 0
    await _expect_tx("claim_below_floor", [tx], 0)  # a proposer that skipped CheckTx


async def test_a_claim_at_the_floors_is_valid() -> None:
    await _import(build_block(make_engine(), [_claim()], NOW))
    await _import(build_block(make_engine(), [_claim(tau_input=0.46, tau_feat=882 / 2048)], NOW))


async def test_invalid_claim_below_min_trigger_count() -> None:
    await _expect_below_floor("trigger_count", trigger_count=1)


async def test_invalid_claim_below_min_signature_bits() -> None:
    await _expect_below_floor("signature_bits", signature_bits=1)


async def test_invalid_claim_looser_than_the_trigger_p_floor() -> None:
    await _expect_below_floor("wm_profile.tau_input", tau_input=0.0)
    await _expect_below_floor("wm_profile.tau_input", tau_input=0.45)


async def test_invalid_claim_looser_than_the_feature_p_floor() -> None:
    await _expect_below_floor("wm_profile.tau_feat", tau_feat=1.0)
    await _expect_below_floor("wm_profile.tau_feat", tau_feat=883 / 2048)  # one bit too many


async def test_invalid_claim_wider_than_the_logit_band_floor() -> None:
    await _expect_below_floor("wm_profile.logit_band_high", logit_band_high=0.06)
    await _expect_below_floor("wm_profile.logit_band_low", logit_band_low=-1.0)
