"""Golden vectors: `docs/protocol.md` holds the expected hex; this checks it byte for byte.

Each vector below computes named hex values from fixed inputs. The doc lists the same names
under `<!-- vector: NAME -->`. If an encoding changes, this test fails until the doc (and every
other implementation) changes too. `python -m tests.unit.test_protocol_vectors` prints the
current values in the doc's format.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from authchain.chain import codec, smt
from authchain.chain.config import ConsensusConfig
from authchain.chain.crypto import KeyPair, sign_block, sign_tx
from authchain.chain.genesis import compute_genesis_block
from authchain.chain.state import Genesis, Validator
from authchain.chain.types import (
    ZERO_HASH,
    AccountId,
    ArtefactMetadata,
    Block,
    BlockHash,
    EvidenceRef,
    Header,
    ModelUseMetadata,
    Overturn,
    SigScheme,
    TxDispute,
    TxHash,
    TxRegisterModel,
    TxTransfer,
    TxUseModel,
    WmProfile,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
CHAIN_ID = "authchain-devnet"

# Fixed inputs. Ed25519 signatures are deterministic, so signed vectors are reproducible
# (ML-DSA-65 signing is randomised; its verification is covered by tests/unit/test_crypto.py).
KEY = KeyPair.from_seed(SigScheme.ED25519, bytes(range(32)))
AID = codec.compute_aid(b"authchain test artefact")
EVIDENCE_HASH = codec.compute_evidence_hash(b"authchain test evidence")
PROFILE = WmProfile(0.9, 0.2, -0.05, 0.05)
EVIDENCE = EvidenceRef("multi_factor_v2", EVIDENCE_HASH, PROFILE)
OTHER = AccountId(b"\x22" * 32)


def _register() -> TxRegisterModel:
    return TxRegisterModel(KEY.account, AID, EVIDENCE, fee=0, nonce=0)


def _header() -> Header:
    txs = (sign_tx(_register(), KEY, CHAIN_ID),)
    return Header(
        parent=BlockHash(ZERO_HASH),
        height=1,
        timestamp=1_700_000_000_000,
        proposer=KEY.account,
        tx_root=codec.compute_tx_root(txs),
        state_root=codec.hash_bytes(b"state"),
    )


LEAVES = [codec.hash_bytes(bytes([i])) for i in range(5)]


def _vectors() -> dict[str, Callable[[], dict[str, str]]]:
    def hashes() -> dict[str, str]:
        return {
            "blake3_empty": codec.hash_bytes(b"").hex(),
            "aid": AID.hex(),
            "evidence_hash": EVIDENCE_HASH.hex(),
            "public_key": KEY.public_key.hex(),
            "account_id": KEY.account.hex(),
        }

    def wm_profile() -> dict[str, str]:
        return {"encoding": codec.encode(PROFILE).hex()}

    def evidence_ref() -> dict[str, str]:
        return {"encoding": codec.encode(EVIDENCE).hex()}

    def tx_register_unsigned() -> dict[str, str]:
        tx = _register()
        return {"encoding": codec.encode(tx).hex(), "tx_hash": codec.compute_tx_hash(tx).hex()}

    def tx_register_signed() -> dict[str, str]:
        tx = sign_tx(_register(), KEY, CHAIN_ID)
        return {
            "signing_bytes": codec.tx_signing_bytes(tx, CHAIN_ID).hex(),
            "signature": tx.signature.hex(),
            "encoding": codec.encode(tx).hex(),
            "tx_hash": codec.compute_tx_hash(tx).hex(),
        }

    def tx_use_model() -> dict[str, str]:
        tx = TxUseModel(KEY.account, AID, ModelUseMetadata("classify", "1.0"), fee=1, nonce=1)
        return {"encoding": codec.encode(tx).hex(), "tx_hash": codec.compute_tx_hash(tx).hex()}

    def tx_register_with_spares() -> dict[str, str]:
        spares = tuple(codec.compute_evidence_hash(f"spare {i}".encode()) for i in range(3))
        sketch = bytes(range(128))
        evidence = EvidenceRef(
            "multi_factor_v2", EVIDENCE_HASH, PROFILE, spares=spares, sketch=sketch
        )
        tx = TxRegisterModel(KEY.account, AID, evidence, fee=0, nonce=0)
        return {"encoding": codec.encode(tx).hex(), "tx_hash": codec.compute_tx_hash(tx).hex()}

    def tx_dispute_signed() -> dict[str, str]:
        spare = codec.compute_evidence_hash(b"spare 1")
        suspect = codec.compute_aid(b"stolen copy")
        tx = sign_tx(TxDispute(KEY.account, AID, suspect, 1, spare, fee=5, nonce=3), KEY, CHAIN_ID)
        return {
            "signing_bytes": codec.tx_signing_bytes(tx, CHAIN_ID).hex(),
            "encoding": codec.encode(tx).hex(),
            "tx_hash": codec.compute_tx_hash(tx).hex(),
        }

    def tx_transfer() -> dict[str, str]:
        tx = TxTransfer(KEY.account, OTHER, amount=1000, fee=10, nonce=2)
        return {"encoding": codec.encode(tx).hex(), "tx_hash": codec.compute_tx_hash(tx).hex()}

    def header() -> dict[str, str]:
        h = _header()
        return {
            "tx_root": h.tx_root.hex(),
            "encoding": codec.encode(h).hex(),
            "block_hash": codec.compute_block_hash(h).hex(),
        }

    def block() -> dict[str, str]:
        h = _header()
        b = sign_block(Block(h, (sign_tx(_register(), KEY, CHAIN_ID),)), KEY, CHAIN_ID)
        return {
            "signing_bytes": codec.block_signing_bytes(codec.compute_block_hash(h), CHAIN_ID).hex(),
            "signature": b.signature.hex(),
            "encoding_blake3": codec.hash_bytes(codec.encode(b)).hex(),
        }

    def merkle() -> dict[str, str]:
        out = {"leaves": ",".join(leaf.hex()[:8] for leaf in LEAVES)}
        for n in (0, 1, 2, 3, 5):
            out[f"root_{n}"] = codec.merkle_root(LEAVES[:n]).hex()
        out["proof_2_of_5"] = ",".join(p.hex() for p in codec.merkle_proof(LEAVES, 2))
        return out

    def artefact_metadata() -> dict[str, str]:
        meta = ArtefactMetadata(AID, KEY.account, EVIDENCE, registered_at=1)
        child = ArtefactMetadata(
            codec.compute_aid(b"child"), KEY.account, EVIDENCE, registered_at=2, parents=(AID,)
        )
        copy = ArtefactMetadata(
            codec.compute_aid(b"stolen copy"), OTHER, EVIDENCE, registered_at=3,
            registered_index=1,
            overturned_by=Overturn(AID, KEY.account, TxHash(codec.hash_bytes(b"dispute")), 4, 1),
        )  # fmt: skip
        spent = ArtefactMetadata(
            AID, KEY.account, EVIDENCE, registered_at=1, spent_spares=(1,),
            overturned=(codec.compute_aid(b"stolen copy"),),
        )  # fmt: skip
        return {
            "encoding": codec.encode(meta).hex(),
            "with_parents": codec.encode(child).hex(),
            "overturned": codec.encode(copy).hex(),
            "spare_spent": codec.encode(spent).hex(),
        }

    def genesis() -> dict[str, str]:
        # one Ed25519 validator (KEY), default floors and block limits, no funded accounts
        rules = Genesis(
            chain_id=CHAIN_ID, timestamp_ms=0, min_fee=0, impersonation=False,
            validators=(Validator(KEY.account, KEY.scheme, KEY.public_key),), accounts=(),
        )  # fmt: skip
        block = compute_genesis_block(rules, ConsensusConfig())
        return {
            "pos_proof": block.header.pos_proof.hex(),
            "block_hash": codec.compute_block_hash(block.header).hex(),
        }

    def state_tree() -> dict[str, str]:
        # three accounts (state keys as in `state.py`), the root, and one key's proof
        entries = {b"acct/" + bytes([i]) * 32: bytes([i]) * 3 for i in (1, 2, 3)}
        none: dict[bytes, bytes] = {}
        tree = smt.StateTree(none.get)
        update = tree.update(entries)
        nodes = {k: v for k, v in update.nodes.items() if v is not None}
        proof = smt.StateTree(nodes.get).prove(b"acct/" + bytes([2]) * 32)
        assert proof.leaf is not None
        return {
            "empty_root": smt.root_of([]).hex(),
            "root": update.root.hex(),
            "proof_acct_02_siblings": "".join(s.hex() for s in proof.siblings),
            "proof_acct_02_leaf": proof.leaf[0].hex() + proof.leaf[1].hex(),
        }

    return {
        "state_tree": state_tree,
        "hashes": hashes,
        "wm_profile": wm_profile,
        "evidence_ref": evidence_ref,
        "tx_register_unsigned": tx_register_unsigned,
        "tx_register_signed": tx_register_signed,
        "tx_register_with_spares": tx_register_with_spares,
        "tx_dispute_signed": tx_dispute_signed,
        "tx_use_model": tx_use_model,
        "tx_transfer": tx_transfer,
        "header": header,
        "block": block,
        "merkle": merkle,
        "artefact_metadata": artefact_metadata,
        "genesis": genesis,
    }


VECTORS = _vectors()
_BLOCK = re.compile(r"<!-- vector: (\w+) -->\s*```text\n(.*?)```", re.S)


def _doc_vectors() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for name, body in _BLOCK.findall(DOC.read_text()):
        fields: dict[str, str] = {}
        key = ""
        for line in body.splitlines():
            if ":" in line and not line.startswith(" "):
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = value.strip()
            elif line.strip():
                fields[key] += line.strip()  # long hex wraps onto indented lines
        found[name] = fields
    return found


def test_doc_lists_every_vector() -> None:
    assert sorted(_doc_vectors()) == sorted(VECTORS)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_matches_doc(name: str) -> None:
    assert VECTORS[name]() == _doc_vectors()[name]


def test_decoding_the_doc_bytes_gives_the_same_values() -> None:
    doc = _doc_vectors()
    tx: TxRegisterModel = codec.decode(
        bytes.fromhex(doc["tx_register_signed"]["encoding"]), TxRegisterModel
    )
    assert tx == sign_tx(_register(), KEY, CHAIN_ID)
    assert codec.decode(bytes.fromhex(doc["header"]["encoding"]), Header) == _header()
    assert codec.decode(bytes.fromhex(doc["wm_profile"]["encoding"]), WmProfile) == PROFILE


def render() -> str:
    """The vectors in the doc's format, wrapping hex at 96 characters."""
    parts = []
    for name, compute in VECTORS.items():
        lines = []
        for key, value in compute().items():
            chunks = [value[i : i + 96] for i in range(0, len(value), 96)] or [""]
            lines.append(f"{key}: {chunks[0]}")
            lines.extend(f"  {c}" for c in chunks[1:])
        parts.append(f"<!-- vector: {name} -->\n```text\n" + "\n".join(lines) + "\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render())
