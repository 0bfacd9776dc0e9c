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
`Application.claims`, which answers from a `ClaimIndex` kept in memory beside the store (as the
application keeps its state), so a query costs what it returns, not the number of records.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable

import msgspec

from authchain.chain.schemas import ClaimStatus
from authchain.chain.types import AccountId, Aid, Height, TxHash, TxRegisterModel
from authchain.chain.validation.ml import Verdict

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


Key = tuple[int, bytes]
"""A record's place in each list it is on: (height, tx hash), so a list reads newest last."""
ListName = tuple[str, str]
"""A list of records: ("status", "committed"), ("aid", hex), ("owner", hex), ("parent", hex),
or ("all", "")."""
ALL: ListName = ("all", "")


def _lists_of(record: ClaimRecord) -> list[ListName]:
    return [
        ALL, ("status", record.status), ("aid", record.aid), ("owner", record.owner),
        *(("parent", p) for p in record.parents),
    ]  # fmt: skip


class ClaimIndex:
    """The node's claim records in memory, each listed under its status, model, owner and
    parents in (height, tx hash) order. A query walks the shortest list it names from the
    newest end and stops at its limit, so the explorer's calls cost what they return (or at
    most the shortest list they name), not the number of records, which grows with the
    chain's registrations. The application updates it after each store write."""

    def __init__(self, records: Iterable[tuple[TxHash, ClaimRecord]] = ()) -> None:
        self._records: dict[bytes, ClaimRecord] = {}
        self._lists: dict[ListName, list[Key]] = defaultdict(list)
        for tx_hash, record in records:  # a node's start: append all, then sort each list once
            key = (record.height, bytes(tx_hash))
            self._records[key[1]] = record
            for name in _lists_of(record):
                self._lists[name].append(key)
        for keys in self._lists.values():
            keys.sort()

    def __len__(self) -> int:
        return len(self._records)

    def put(self, tx_hash: TxHash, record: ClaimRecord) -> None:
        """Add or replace `tx_hash`'s record."""
        self.remove(tx_hash)
        key = (record.height, bytes(tx_hash))
        self._records[key[1]] = record
        for name in _lists_of(record):
            bisect.insort(self._lists[name], key)

    def remove(self, tx_hash: TxHash) -> None:
        record = self._records.pop(bytes(tx_hash), None)
        if record is None:
            return
        key = (record.height, bytes(tx_hash))
        for name in _lists_of(record):
            keys = self._lists[name]
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]
            if not keys:
                del self._lists[name]

    def find(
        self,
        *,
        aid: Aid | None = None,
        parent: Aid | None = None,
        owner: AccountId | None = None,
        status: ClaimStatus | None = None,
        limit: int,
    ) -> list[tuple[TxHash, ClaimRecord]]:
        """The newest `limit` records on every list named (all records if none is): by
        height, then tx hash, both descending."""
        given = {"aid": aid, "parent": parent, "owner": owner, "status": status}
        names = [(name, str(value)) for name, value in given.items() if value is not None]
        shortest = min((self._lists.get(name, []) for name in names or [ALL]), key=len)
        found: list[tuple[TxHash, ClaimRecord]] = []
        for _, raw in reversed(shortest):
            if len(found) == limit:
                break
            record = self._records[raw]
            if all(name in _lists_of(record) for name in names):
                found.append((TxHash(raw), record))
        return found


__all__ = [
    "ClaimIndex",
    "ClaimRecord",
    "ClaimStatus",
    "claim_json",
    "claim_record",
    "decode_claim",
    "encode_claim",
    "pending_claim",
]
