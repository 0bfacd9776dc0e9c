"""Block 0: the genesis block, whose hash commits to the genesis state and to the chain's rules.

Two nodes agree on a chain only if they agree on its genesis hash: the embedded driver refuses
a store of another chain, and every block descends from this one.
"""

from __future__ import annotations

from authchain.chain import codec
from authchain.chain.config import ConsensusConfig
from authchain.chain.state import Genesis, compute_state_root, genesis_state
from authchain.chain.types import ZERO_HASH, AccountId, Block, BlockHash, Header


def compute_genesis_block(genesis: Genesis, config: ConsensusConfig) -> Block:
    """Block 0: commits to the genesis state and, through pos_proof, to the chain's rules:
    fees, impersonation, validators, the block validity limits and the watermark floors."""
    f = genesis.floors
    rules = codec.encode(
        (
            "authchain/genesis/v2",
            genesis.chain_id,
            genesis.min_fee,
            genesis.impersonation,
            tuple((v.scheme.value, v.public_key) for v in genesis.validators),
            config.validity_rules(),
            (
                f.min_trigger_count, f.min_signature_bits, f.trigger_p_log2, f.feature_p_log2,
                f.derivative_p_log2, f.max_logit_band,
            ),
        )
    )  # fmt: skip
    header = Header(
        parent=BlockHash(ZERO_HASH),
        height=0,
        timestamp=genesis.timestamp_ms,
        proposer=AccountId(ZERO_HASH),
        tx_root=codec.compute_tx_root(()),
        state_root=compute_state_root(genesis_state(genesis).items()),
        pos_proof=bytes(codec.hash_bytes(rules)),
    )
    return Block(header)
