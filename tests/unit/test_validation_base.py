"""V_base: one test_invalid_* per rule, each feeding validate_block a block that breaks it."""

from __future__ import annotations

import msgspec
import pytest

from authchain.chain import codec, crypto
from authchain.chain.config import ConsensusConfig
from authchain.chain.state import InvalidTx, StateView
from authchain.chain.types import (
    Aid,
    Block,
    BlockHash,
    EvidenceHash,
    EvidenceRef,
    SigScheme,
    TxRegisterModel,
    TxTransfer,
    WmProfile,
)
from authchain.chain.validation.base import (
    MAX_CLOCK_DRIFT_MS,
    BlockReason,
    InvalidBlock,
    validate_block,
)
from tests.support.chain import CHAIN, OWNER, T0, VALIDATOR, build_block, make_engine, register

NOW = T0 + 5_000


def _check(block: Block, config: ConsensusConfig | None = None) -> None:
    engine = make_engine()
    validate_block(
        StateView(engine.view().base),
        block,
        engine.tip,
        engine.tip_header,
        engine.genesis,
        config or engine.config,
        NOW,
    )


def _expect(reason: BlockReason, block: Block, config: ConsensusConfig | None = None) -> None:
    with pytest.raises(InvalidBlock) as info:
        _check(block, config)
    assert info.value.reason is reason


def _resign(block: Block, **header_changes: object) -> Block:
    header = msgspec.structs.replace(block.header, **header_changes)
    return crypto.sign_block(Block(header, block.txs), VALIDATOR, CHAIN)


def _good(txs: list[TxTransfer] | None = None) -> Block:
    return build_block(make_engine(), list(txs or []), NOW)


def test_valid_block_passes() -> None:
    _check(_good())
    _check(build_block(make_engine(), [register(1, 0)], NOW))


def test_invalid_parent() -> None:
    _expect(BlockReason.BAD_PARENT, _resign(_good(), parent=BlockHash(b"\x09" * 32)))


def test_invalid_height() -> None:
    _expect(BlockReason.BAD_HEIGHT, _resign(_good(), height=2))


def test_invalid_timestamp_not_after_parent() -> None:
    _expect(BlockReason.BAD_TIMESTAMP, _resign(_good(), timestamp=T0))


def test_invalid_timestamp_in_the_future() -> None:
    _expect(BlockReason.BAD_TIMESTAMP, _resign(_good(), timestamp=NOW + MAX_CLOCK_DRIFT_MS + 1))


def test_invalid_proposer() -> None:
    intruder = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x07" * 32)
    block = _good()
    header = msgspec.structs.replace(block.header, proposer=intruder.account)
    _expect(BlockReason.WRONG_PROPOSER, crypto.sign_block(Block(header), intruder, CHAIN))


def test_invalid_block_signature() -> None:
    block = _good()
    _expect(BlockReason.BAD_BLOCK_SIGNATURE, msgspec.structs.replace(block, signature=b"\x00" * 64))
    other_chain = crypto.sign_block(block, VALIDATOR, CHAIN + "-x")
    _expect(BlockReason.BAD_BLOCK_SIGNATURE, other_chain)


def test_invalid_too_many_txs() -> None:
    block = build_block(make_engine(), [register(1, 0), register(2, 1)], NOW)
    _expect(BlockReason.TOO_MANY_TXS, block, ConsensusConfig(max_block_txs=1))


def test_invalid_too_large() -> None:
    block = build_block(make_engine(), [register(n, n) for n in range(1, 10)], NOW)
    assert len(codec.encode(block)) > 1024
    _expect(BlockReason.TOO_LARGE, block, ConsensusConfig(max_block_size_bytes=1024))


def test_invalid_tx_root() -> None:
    block = build_block(make_engine(), [register(1, 0)], NOW)
    _expect(BlockReason.BAD_TX_ROOT, _resign(block, tx_root=codec.compute_tx_root([])))


def test_invalid_empty_block() -> None:
    _expect(BlockReason.EMPTY_BLOCK, _good(), ConsensusConfig(allow_empty_blocks=False))


def test_invalid_pos_proof() -> None:
    _expect(BlockReason.BAD_POS_PROOF, _resign(_good(), pos_proof=b"stake"))


def test_invalid_duplicate_aid() -> None:
    first = register(1, 0)
    second = crypto.sign_tx(msgspec.structs.replace(first, nonce=1, signature=b""), OWNER, CHAIN)
    _expect(BlockReason.DUPLICATE_AID, build_block(make_engine(), [first, second], NOW))


def test_invalid_tx_bad_nonce() -> None:
    _expect(BlockReason.INVALID_TX, build_block(make_engine(), [register(1, 5)], NOW))


def test_invalid_tx_bad_signature() -> None:
    tx = msgspec.structs.replace(register(1, 0), fee=1)  # signature no longer covers it
    with pytest.raises(InvalidBlock, match="bad_signature"):
        _check(build_block(make_engine(), [tx], NOW))


def test_invalid_tx_insufficient_balance() -> None:
    tx = crypto.sign_tx(TxTransfer(OWNER.account, VALIDATOR.account, 10**6, 0, 0), OWNER, CHAIN)
    with pytest.raises(InvalidBlock, match="insufficient_balance"):
        _check(build_block(make_engine(), [tx], NOW))


def test_invalid_state_root() -> None:
    block = build_block(make_engine(), [register(1, 0)], NOW)
    _expect(BlockReason.BAD_STATE_ROOT, _resign(block, state_root=codec.hash_bytes(b"x")))


# --- the chain's floors: each one refused at CheckTx (naming the field) and in V_base --------


def _claim(**change: object) -> TxRegisterModel:
    profile = {"tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -0.05, "logit_band_high": 0.05}
    strength = {"trigger_count": 100, "signature_bits": 2048, "num_classes": 10}
    profile.update({k: v for k, v in change.items() if k in profile})  # type: ignore[misc]
    strength.update({k: v for k, v in change.items() if k in strength})  # type: ignore[misc]
    evidence = EvidenceRef(
        "multi_factor_v2", EvidenceHash(b"\x77" * 32), WmProfile(**profile), **strength
    )
    tx = TxRegisterModel(OWNER.account, Aid(b"\x66" * 32), evidence, fee=0, nonce=0)
    return crypto.sign_tx(tx, OWNER, CHAIN)


def _expect_below_floor(field: str, **change: object) -> None:
    tx = _claim(**change)
    engine = make_engine()
    with pytest.raises(InvalidTx) as info:  # CheckTx
        engine.submit_tx(tx)
    assert info.value.reason == "claim_below_floor" and info.value.field == f"evidence.{field}"
    assert len(engine.pool) == 0
    with pytest.raises(InvalidBlock) as block_info:  # V_base: a proposer that skipped CheckTx
        _check(build_block(make_engine(), [tx], NOW))
    assert block_info.value.reason is BlockReason.INVALID_TX
    assert "claim_below_floor" in str(block_info.value)


def test_a_claim_at_the_floors_is_valid() -> None:
    _check(build_block(make_engine(), [_claim()], NOW))
    _check(build_block(make_engine(), [_claim(tau_input=0.46, tau_feat=882 / 2048)], NOW))


def test_invalid_claim_below_min_trigger_count() -> None:
    _expect_below_floor("trigger_count", trigger_count=1)


def test_invalid_claim_below_min_signature_bits() -> None:
    _expect_below_floor("signature_bits", signature_bits=1)


def test_invalid_claim_looser_than_the_trigger_p_floor() -> None:
    _expect_below_floor("wm_profile.tau_input", tau_input=0.0)
    _expect_below_floor("wm_profile.tau_input", tau_input=0.45)


def test_invalid_claim_looser_than_the_feature_p_floor() -> None:
    _expect_below_floor("wm_profile.tau_feat", tau_feat=1.0)
    _expect_below_floor("wm_profile.tau_feat", tau_feat=883 / 2048)  # one bit too many wrong


def test_invalid_claim_wider_than_the_logit_band_floor() -> None:
    _expect_below_floor("wm_profile.logit_band_high", logit_band_high=0.06)
    _expect_below_floor("wm_profile.logit_band_low", logit_band_low=-1.0)
