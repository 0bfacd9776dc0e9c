"""Claim records: what this node's V_auth said about each registration it judged.

The chain's state holds a registered model's owner, claim and lineage, never the verifier's
statistics: they are a validator's local observation, like the reason a tx was dropped. The
application keeps one `ClaimRecord` per registration tx it judged, in the store's `claims`
column (tx hash -> msgpack), written in the same atomic batch as the block or the drop that
decided it:

- committed: the verdict that let the model in (its p-values, its lineage);
- rejected: the reason it was dropped or skipped, with the verifier's statistics when V_auth
  was the reason.

Records of committed claims live as long as the model (one per registration, which pays a
fee). Records of rejected claims are pruned with the rejection records (`rejections_kept_blocks`,
`max_rejections`): strangers decide how many there are. The explorer reads them through
`Application.claims`.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from authchain.chain.types import Aid, Height, TxHash, TxRegisterModel
from authchain.chain.validation.ml import Verdict

ClaimStatus = Literal["pending", "committed", "rejected"]
STATS = (
    "trigger_acc", "feat_dist", "logit_stat", "p_value", "feat_p_value", "log2_p_value",
    "log2_feat_p_value",
)  # fmt: skip
"""The verifier's statistics a record keeps (non-finite ones as None: JSON has no inf)."""


class ClaimRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One registration as this node judged it (local, not consensus state)."""

    aid: str
    owner: str
    height: int
    """Committed: the block's height; rejected: the height it was dropped at."""
    status: ClaimStatus
    reason: str = ""
    detail: str = ""
    trigger_acc: float | None = None
    feat_dist: float | None = None
    logit_stat: float | None = None
    p_value: float | None = None
    feat_p_value: float | None = None
    log2_p_value: float | None = None
    log2_feat_p_value: float | None = None
    parents: tuple[str, ...] = ()
    """The lineage the chain recorded (committed claims only)."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ClaimRecord)


def encode_claim(record: ClaimRecord) -> bytes:
    return _encoder.encode(record)


def decode_claim(raw: bytes) -> ClaimRecord:
    return _decoder.decode(raw)


def claim_record(
    tx: TxRegisterModel,
    height: Height,
    status: ClaimStatus,
    *,
    verdict: Verdict | None = None,
    reason: str = "",
    detail: str = "",
    parents: tuple[Aid, ...] = (),
) -> ClaimRecord:
    """The record of `tx`'s claim, with `verdict`'s statistics when V_auth answered."""
    stats: dict[str, float | None] = {}
    if verdict is not None:
        for name in STATS:
            value = getattr(verdict, name)
            stats[name] = value if value is not None and math.isfinite(value) else None
    return ClaimRecord(
        aid=str(tx.aid),
        owner=str(tx.owner),
        height=int(height),
        status=status,
        reason=reason,
        detail=detail,
        parents=tuple(str(p) for p in parents),
        **stats,
    )


def claim_json(tx_hash: TxHash, record: ClaimRecord) -> dict[str, object]:
    """The JSON view of a record (`ClaimPublic`)."""
    fields = msgspec.structs.asdict(record)
    return {"tx_hash": str(tx_hash), **fields, "parents": list(record.parents)}


def pending_claim(tx_hash: TxHash, tx: TxRegisterModel) -> dict[str, object]:
    """The JSON view of a registration still in the pool."""
    return claim_json(tx_hash, ClaimRecord(aid=str(tx.aid), owner=str(tx.owner), height=0,
                                           status="pending"))  # fmt: skip


__all__ = [
    "ClaimRecord",
    "ClaimStatus",
    "claim_json",
    "claim_record",
    "decode_claim",
    "encode_claim",
    "pending_claim",
]
