"""`V_base` (seed `validation/base.rs`) for the block itself: the header rules the embedded
driver checks (`validate_header`; CometBFT checks its own headers), the tx count both drivers
check, and the reasons a block is invalid.

Header rules, in order (each raises `InvalidBlock` with its own `BlockReason`): links (parent,
height, timestamp), proposer (expected by round-robin, and its signature), shape (tx count,
encoded size, tx_root, empty-block policy, pos_proof). What each tx must meet (V_base's state
rules and V_auth) is `validation/pipeline.py`; the state root, which also commits to the
lineage V_auth found, is checked against FinalizeBlock's app hash (`consensus/engine.py`).
"""

from __future__ import annotations

import enum

from authchain.chain import codec, crypto
from authchain.chain.config import ConsensusConfig
from authchain.chain.errors import Rejected, SignatureError
from authchain.chain.state import (
    Genesis,
    Validator,
)
from authchain.chain.types import (
    Block,
    BlockHash,
    Header,
    Height,
)

MAX_CLOCK_DRIFT_MS = 15_000
"""How far in the future a block's timestamp may be, by the validator's clock."""


class BlockReason(enum.StrEnum):
    """Why a block is invalid; stable strings for logs, metrics and clients."""

    BAD_PARENT = "bad_parent"
    BAD_HEIGHT = "bad_height"
    BAD_TIMESTAMP = "bad_timestamp"
    WRONG_PROPOSER = "wrong_proposer"
    BAD_BLOCK_SIGNATURE = "bad_block_signature"
    TOO_MANY_TXS = "too_many_txs"
    TOO_LARGE = "too_large"
    BAD_TX_ROOT = "bad_tx_root"
    EMPTY_BLOCK = "empty_block"
    BAD_POS_PROOF = "bad_pos_proof"
    DUPLICATE_AID = "duplicate_aid"
    INVALID_TX = "invalid_tx"
    BAD_STATE_ROOT = "bad_state_root"
    TOO_MANY_ARTEFACTS = "too_many_artefacts"
    ML_AUTH_FAILED = "ml_auth_failed"


class InvalidBlock(Rejected):
    """A block breaks a validity rule."""

    reason: BlockReason


def get_expected_proposer(validators: tuple[Validator, ...], height: Height) -> Validator:
    """Round-robin proof of authority: validator `height mod n` proposes block `height`."""
    if not validators:
        raise InvalidBlock(BlockReason.WRONG_PROPOSER, "genesis has no validators")
    return validators[height % len(validators)]


def validate_header_links(
    header: Header, parent_hash: BlockHash, parent: Header, now_ms: int
) -> None:
    """Parent hash, height and timestamp follow from the parent; not too far in the future."""
    if header.parent != parent_hash:
        raise InvalidBlock(BlockReason.BAD_PARENT, f"parent {header.parent} is not {parent_hash}")
    if header.height != parent.height + 1:
        raise InvalidBlock(
            BlockReason.BAD_HEIGHT, f"height {header.height} after parent {parent.height}"
        )
    if header.timestamp <= parent.timestamp:
        raise InvalidBlock(BlockReason.BAD_TIMESTAMP, "timestamp not after the parent's")
    if header.timestamp > now_ms + MAX_CLOCK_DRIFT_MS:
        raise InvalidBlock(
            BlockReason.BAD_TIMESTAMP,
            f"timestamp {header.timestamp} is more than {MAX_CLOCK_DRIFT_MS} ms ahead",
        )


def validate_proposer(block: Block, genesis: Genesis) -> None:
    """The expected validator proposed the block and signed it for this chain."""
    expected = get_expected_proposer(genesis.validators, block.header.height)
    if block.header.proposer != expected.account:
        raise InvalidBlock(
            BlockReason.WRONG_PROPOSER,
            f"height {block.header.height} belongs to {expected.account.short()}, "
            f"not {block.header.proposer.short()}",
        )
    try:
        crypto.verify_block_signature(block, expected.scheme, expected.public_key, genesis.chain_id)
    except SignatureError as exc:
        raise InvalidBlock(BlockReason.BAD_BLOCK_SIGNATURE, str(exc)) from exc


def check_tx_count(count: int, config: ConsensusConfig) -> None:
    """A block holds at most `max_block_txs` txs (both drivers; CometBFT's own limit is on
    bytes)."""
    if count > config.max_block_txs:
        raise InvalidBlock(BlockReason.TOO_MANY_TXS, f"{count} txs > {config.max_block_txs}")


def validate_shape(block: Block, config: ConsensusConfig) -> None:
    """Counts, size, tx_root, empty-block policy, no proof-of-stake proof under PoA."""
    check_tx_count(len(block.txs), config)
    size = len(codec.encode(block))
    if size > config.max_block_size_bytes:
        raise InvalidBlock(BlockReason.TOO_LARGE, f"{size} bytes > {config.max_block_size_bytes}")
    if block.header.tx_root != codec.compute_tx_root(block.txs):
        raise InvalidBlock(BlockReason.BAD_TX_ROOT, "tx_root does not match the transactions")
    if not block.txs and not config.allow_empty_blocks:
        raise InvalidBlock(BlockReason.EMPTY_BLOCK, "empty blocks are not allowed")
    if block.header.pos_proof:
        raise InvalidBlock(BlockReason.BAD_POS_PROOF, "proof-of-authority blocks carry no proof")


def validate_header(
    block: Block,
    parent_hash: BlockHash,
    parent: Header,
    genesis: Genesis,
    config: ConsensusConfig,
    now_ms: int,
) -> None:
    """Everything about a block but its txs' execution and its state root: the links to its
    parent, the proposer and its signature, the shape (count, size, tx root). The embedded
    driver runs this on every block, its own included."""
    validate_header_links(block.header, parent_hash, parent, now_ms)
    validate_proposer(block, genesis)
    validate_shape(block, config)
