"""JSON views of chain data, shared by the node RPC and the gateway (DESIGN.md §6).

Canonical bytes stay the protocol (`codec`); these are the readable views that HTTP APIs
return. Hashes and byte strings are lower-case hex. A transaction's JSON carries its `type`
(`register_model`, `use_model`, `transfer`) and `hash`. Signed transactions travel as the hex
of their canonical bytes (`SubmitTx.tx`), so what was signed is exactly what arrives.

This module imports only types, codec and smt, so the gateway may use it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast, get_args
from urllib.parse import urlencode

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from authchain.chain import codec, smt
from authchain.chain.errors import InvalidField
from authchain.chain.types import (
    AccountId,
    Aid,
    ArtefactMetadata,
    Block,
    BlockHash,
    Hash256,
    Record,
    Transaction,
    TxDispute,
    TxHash,
    TxRegisterModel,
    TxTransfer,
    TxUseModel,
)

TX_TYPES: dict[type, str] = {
    TxRegisterModel: "register_model",
    TxUseModel: "use_model",
    TxTransfer: "transfer",
    TxDispute: "dispute",
}
BLOCK_REF_PATTERN = r"^([0-9]{1,19}|(0x)?[0-9a-fA-F]{64})$"
"""A block reference in a path: a height (decimal, below 2^63) or a block hash (64 hex)."""


def parse_block_ref(ref: str) -> int | BlockHash:
    """A `BLOCK_REF_PATTERN` reference as a height or a block hash; InvalidField(`ref`)
    otherwise."""
    if ref.isascii() and ref.isdigit() and len(ref) <= 19:
        return int(ref)
    return BlockHash.from_hex(ref, field="ref")


MAX_TX_BYTES = 64 * 1024
"""Largest accepted encoded transaction (an ML-DSA-65 signature and key are about 5 KiB)."""


def to_json(value: Any) -> Any:
    """A Record (and what it holds) as JSON-ready builtins: dicts by field name, hex bytes."""
    if isinstance(value, Record):
        return {f: to_json(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, bytes | Hash256):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def tx_to_json(tx: Transaction) -> dict[str, Any]:
    """A transaction with its type and hash first."""
    fields: dict[str, Any] = to_json(tx)
    return {"type": TX_TYPES[type(tx)], "hash": str(codec.compute_tx_hash(tx)), **fields}


def encode_tx_hex(tx: Transaction) -> str:
    """What `SubmitTx.tx` carries: the hex of the tx's canonical bytes."""
    return codec.encode(tx).hex()


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitTx(_Schema):
    """A signed transaction to submit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tx: str = Field(
        min_length=2,
        max_length=2 * MAX_TX_BYTES,
        pattern=r"^(0x)?([0-9a-fA-F]{2})+$",
        description="hex of the transaction's canonical bytes (see docs/protocol.md)",
    )


class SubmitTxAccepted(_Schema):
    """CheckTx passed: the tx is pooled and persisted."""

    status: Literal["accepted"] = "accepted"
    tx_hash: TxHash


MAX_BATCH_TXS = 500
"""Most txs in one `POST /txs/batch`."""
MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Largest `POST /txs/batch` body (about 380 ML-DSA-65 transfers, in hex)."""
TxHex = Annotated[
    str,
    Field(min_length=2, max_length=2 * MAX_TX_BYTES, pattern=r"^(0x)?([0-9a-fA-F]{2})+$"),
]


class SubmitTxBatch(_Schema):
    """Signed transactions to submit together (each as in `SubmitTx`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    txs: list[TxHex] = Field(min_length=1, max_length=MAX_BATCH_TXS)


def batch_field(index: int, field: str | None) -> str:
    """Where a batch's problem is: `txs.3`, or `txs.3.nonce` for a tx's field `tx.nonce`."""
    rest = (field or "").removeprefix("tx").lstrip(".")
    return f"txs.{index}" + (f".{rest}" if rest else "")


class SubmitTxBatchItem(_Schema):
    """One tx's answer in a batch: accepted with its hash, or rejected with the reason."""

    status: Literal["accepted", "rejected"]
    tx_hash: TxHash | None = None
    reason: str | None = None
    detail: str | None = None
    field: str | None = None


class SubmitTxBatchResult(_Schema):
    """Per-tx answers, in the order submitted; the accepted ones are pooled and persisted."""

    accepted: int
    results: list[SubmitTxBatchItem]


class TxStatus(_Schema):
    """Where a transaction is: pending, committed (with an inclusion proof) or dropped."""

    tx_hash: TxHash
    status: Literal["queued", "committed", "rejected"]
    tx: dict[str, Any] | None = None
    height: int | None = None
    block_hash: BlockHash | None = None
    index: int | None = Field(None, description="position of the tx in its block")
    tx_count: int | None = Field(None, description="number of txs in the block (Merkle leaves)")
    tx_root: Hash256 | None = None
    proof: list[Hash256] | None = Field(
        None,
        description="RFC 6962 audit path to tx_root: from the tx hash with BLAKE3 (embedded "
        "node), or from SHA-256 of the tx bytes with SHA-256 (CometBFT: tx_root is data_hash)",
    )
    proof_hash: Literal["blake3", "sha256"] | None = Field(
        None, description="which hash the proof uses (absent: blake3)"
    )
    tx_bytes: str | None = Field(None, description="hex of the tx's bytes (sha256 proofs' leaf)")
    reason: str | None = None
    detail: str | None = None


def verify_tx_status_proof(status: TxStatus) -> bool:
    """Whether a committed status's Merkle proof puts its tx under its `tx_root`."""
    if status.status != "committed" or status.proof is None or status.tx_root is None:
        return False
    if status.index is None or status.tx_count is None:
        return False
    if status.proof_hash == "sha256":
        if status.tx_bytes is None:
            return False
        raw = bytes.fromhex(status.tx_bytes)
        if codec.compute_tx_hash(codec.decode(raw, Transaction)) != status.tx_hash:
            return False  # the proof must be of the tx the status names
        leaf = hashlib.sha256(raw).digest()  # CometBFT's leaves are the txs' SHA-256 hashes
        return codec.verify_merkle_proof(
            leaf, status.index, status.tx_count, status.proof, status.tx_root, sha256=True
        )
    return codec.verify_merkle_proof(
        status.tx_hash, status.index, status.tx_count, status.proof, status.tx_root
    )


class StateProofPublic(_Schema):
    """One state entry (or its absence) and its sparse Merkle proof against the app hash
    committed at `height` (`authchain.chain.smt`). Under CometBFT that app hash is in the header
    of block `height + 1`; on the embedded node it is block `height`'s `state_root`."""

    height: int = Field(description="committed height whose app hash the proof is against")
    app_hash: Hash256
    key: str = Field(description="the state key, hex: 'acct/' + account id, 'art/' + aid")
    value: str | None = Field(description="the entry's canonical bytes, hex; null when absent")
    record: dict[str, Any] | None = Field(description="`value` decoded, for reading")
    siblings: list[Hash256] = Field(description="sibling hashes from the root down")
    leaf: tuple[Hash256, Hash256] | None = Field(
        description="(key hash, value hash) of the leaf where the path ends; null: empty"
    )

    def verify(self, app_hash: bytes | None = None) -> bool:
        """Whether the proof puts `value` (or nothing) at `key` under `app_hash` (by default
        the one it names: check that one against a header you trust)."""
        proof = smt.StateProof(
            tuple(bytes(s) for s in self.siblings),
            None if self.leaf is None else (bytes(self.leaf[0]), bytes(self.leaf[1])),
        )
        value = None if self.value is None else bytes.fromhex(self.value)
        root = bytes(self.app_hash) if app_hash is None else app_hash
        return smt.verify_proof(root, bytes.fromhex(self.key), value, proof)


class BlockPublic(_Schema):
    """A block: its hash, header fields and transactions."""

    hash: BlockHash
    height: int
    header: dict[str, Any]
    txs: list[dict[str, Any]]
    signature: str
    size_bytes: int


def block_to_public(block: Block) -> BlockPublic:
    """The JSON view of `block`."""
    return BlockPublic(
        hash=codec.compute_block_hash(block.header),
        height=block.header.height,
        header=to_json(block.header),
        txs=[tx_to_json(tx) for tx in block.txs],
        signature=block.signature.hex(),
        size_bytes=len(codec.encode(block)),
    )


class AccountPublic(_Schema):
    """An account's state, and the nonce its next transaction should carry."""

    account: AccountId
    balance: int
    nonce: int = Field(description="nonce of the next tx to be committed")
    next_nonce: int = Field(description="nonce for a new tx, counting pending ones")


class OverturnPublic(_Schema):
    """Why a registration no longer stands."""

    earlier_aid: Aid
    earlier_owner: AccountId
    dispute_tx: TxHash
    height: int = Field(description="the block that overturned it")
    spare_index: int


class ArtefactPublic(_Schema):
    """A registered artefact (seed `ArtefactMetadata`) and its use count."""

    aid: Aid
    owner: AccountId
    scheme_id: str
    evidence_hash: Hash256
    wm_profile: dict[str, float]
    trigger_count: int = Field(description="K: trigger inputs in the evidence")
    signature_bits: int = Field(description="n: signature bits in the evidence")
    num_classes: int = Field(description="C: the model's classes")
    registered_at: int
    parents: list[Aid] = Field(
        description="lineage: earlier registrations of the same owner this model derives from"
    )
    spares: list[Hash256] = Field(
        description="BLAKE3 of each spare watermark's evidence, committed at registration; "
        "the owner reveals one only in a dispute"
    )
    spent_spares: list[int] = Field(description="spares revealed by upheld disputes")
    sketch: str = Field(
        description="the artefact's function sketch (hex): the chain checks a new claim "
        "against the registration with the nearest"
    )
    overturned: list[Aid] = Field(
        description="later registrations this model's owner overturned by disputes"
    )
    status: Literal["registered", "overturned"]
    overturned_by: OverturnPublic | None = Field(
        None, description="the dispute that proved it a copy of an earlier registration"
    )
    uses: int
    last_used_at: int | None


def artefact_to_public(meta: ArtefactMetadata, uses: int, last_used_at: int) -> ArtefactPublic:
    """The JSON view of a registered artefact."""
    return ArtefactPublic(
        aid=meta.aid,
        owner=meta.owner,
        scheme_id=meta.evidence.scheme_id,
        evidence_hash=meta.evidence.evidence_hash,
        wm_profile=to_json(meta.evidence.wm_profile),
        trigger_count=meta.evidence.trigger_count,
        signature_bits=meta.evidence.signature_bits,
        num_classes=meta.evidence.num_classes,
        registered_at=meta.registered_at,
        parents=list(meta.parents),
        spares=list(meta.evidence.spares),
        spent_spares=list(meta.spent_spares),
        sketch=meta.evidence.sketch.hex(),
        overturned=list(meta.overturned),
        status="overturned" if meta.overturned_by is not None else "registered",
        overturned_by=(
            OverturnPublic(**msgspec.structs.asdict(meta.overturned_by))
            if meta.overturned_by is not None
            else None
        ),
        uses=uses,
        last_used_at=last_used_at if uses else None,
    )


class DisputePublic(_Schema):
    """A committed dispute's verdict (consensus state: every validator holds the same)."""

    tx_hash: TxHash
    earlier_aid: Aid
    suspect_aid: Aid
    spare_index: int
    upheld: bool
    reason: str = Field(description="why it failed (empty when upheld)")
    height: int
    earlier_log2_p_value: float | None = Field(
        None,
        description="this node's V_auth: the earlier artefact's trigger p-value under the "
        "spare key (log2); not consensus state",
    )
    earlier_log2_feat_p_value: float | None = Field(
        None, description="... and its signature p-value (log2)"
    )
    suspect_log2_p_value: float | None = Field(
        None, description="the suspect under the spare key, both factors together (log2)"
    )
    detail: str = Field("", description="this node's V_auth's explanation")


class ClaimPublic(_Schema):
    """A registration as this node's V_auth judged it (`authchain.chain.claims`): pending,
    committed with the verifier's statistics, or rejected with the reason."""

    tx_hash: TxHash
    aid: Aid
    owner: AccountId
    height: int = Field(description="committed at / dropped at; 0 while pending")
    status: Literal["pending", "committed", "rejected"]
    reason: str = ""
    detail: str = ""
    trigger_acc: float | None = None
    feat_dist: float | None = None
    logit_stat: float | None = None
    p_value: float | None = Field(None, description="trigger test: P(a model without it passes)")
    feat_p_value: float | None = Field(None, description="signature test's p-value")
    log2_p_value: float | None = None
    log2_feat_p_value: float | None = None
    parents: list[Aid] = Field(default_factory=list, description="lineage recorded on chain")


ClaimStatus = Literal["pending", "committed", "rejected"]
MAX_CLAIMS = 100
"""The most claims one query returns."""


@dataclass(frozen=True)
class ClaimQuery:
    """Which claims to list, newest first: `aid` keeps the claims on one model, `parent` the
    committed claims whose lineage names it (its registered fine-tunes), `owner` one account's,
    `status` one kind; at most `limit` (1 to 100). The node RPC, the ABCI query path and the
    gateway all read and write it here."""

    aid: Aid | None = None
    parent: Aid | None = None
    owner: AccountId | None = None
    status: ClaimStatus | None = None
    limit: int = 50

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ClaimQuery:
        """The query a URL's parameters state; InvalidField naming the first bad one."""
        unknown = set(params) - {"aid", "parent", "owner", "status", "limit"}
        if unknown:
            raise InvalidField(min(unknown), "unknown parameter")
        status = params.get("status")
        if status is not None and status not in get_args(ClaimStatus):
            raise InvalidField("status", f"must be one of {', '.join(get_args(ClaimStatus))}")
        limit = params.get("limit", "50")
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_CLAIMS):
            raise InvalidField("limit", f"must be an integer in [1, {MAX_CLAIMS}]")
        aid, parent, owner = params.get("aid"), params.get("parent"), params.get("owner")
        return cls(
            aid=None if aid is None else Aid.from_hex(aid, field="aid"),
            parent=None if parent is None else Aid.from_hex(parent, field="parent"),
            owner=None if owner is None else AccountId.from_hex(owner, field="owner"),
            status=cast(ClaimStatus | None, status),
            limit=int(limit),
        )

    def params(self) -> dict[str, str]:
        """The URL parameters stating this query (`from_params` reads them back)."""
        values = {"aid": self.aid, "parent": self.parent, "owner": self.owner,
                  "status": self.status, "limit": self.limit}  # fmt: skip
        return {k: str(v) for k, v in values.items() if v is not None}

    def path(self) -> str:
        """`/claims?...`, as the node RPC and the ABCI query path take it."""
        return "/claims?" + urlencode(self.params())


class ClaimList(_Schema):
    """Registrations, newest first (pending ones first)."""

    claims: list[ClaimPublic]


class BlockSummary(_Schema):
    """One line of a block list."""

    height: int
    hash: BlockHash
    timestamp_ms: int
    proposer: str = Field(description="authchain account (embedded) or CometBFT address")
    tx_count: int


class BlockList(_Schema):
    """The newest canonical blocks, newest first."""

    blocks: list[BlockSummary]


class ValidatorPublic(_Schema):
    """A member of the validator set."""

    account: AccountId | None = Field(None, description="authchain account, when known")
    address: str | None = Field(None, description="CometBFT validator address (hex)")
    scheme: str
    public_key: str
    voting_power: int
    proposer_priority: int | None = None


class ValidatorList(_Schema):
    """The validator set at `height`."""

    height: int
    validators: list[ValidatorPublic]


def block_summary(block: Block) -> BlockSummary:
    """The list line of `block`."""
    h = block.header
    return BlockSummary(
        height=h.height,
        hash=codec.compute_block_hash(h),
        timestamp_ms=h.timestamp,
        proposer=str(h.proposer),
        tx_count=len(block.txs),
    )


class NodeStatus(_Schema):
    """What a node is and where its chain stands."""

    version: str
    chain_id: str
    genesis_hash: BlockHash
    height: int
    tip: BlockHash
    tip_timestamp_ms: int
    pool_size: int
    min_fee: int
    impersonation: bool
    validators: list[AccountId]
    validator: AccountId | None = Field(None, description="this node's key, if it proposes")
    block_time_secs: float
    floors: dict[str, float] = Field(
        default_factory=dict, description="genesis' floors on watermark claims (`Floors`)"
    )
