"""What the chain records about a registered model artefact."""

from __future__ import annotations

from authchain.chain.errors import InvalidField
from authchain.chain.types.ids import HASH_LEN, AccountId, Aid, Height, TxHash
from authchain.chain.types.record import Record
from authchain.chain.types.tx import MAX_SPARES, EvidenceRef


class Overturn(Record, frozen=True):
    """Why a registration no longer stands: a dispute proved it a copy of `earlier_aid`."""

    earlier_aid: Aid
    earlier_owner: AccountId
    dispute_tx: TxHash
    height: Height
    """Height of the block that overturned it."""
    spare_index: int


class ArtefactMetadata(Record, frozen=True):
    """A registered artefact: who owns it and what watermark claim was verified."""

    aid: Aid
    owner: AccountId
    evidence: EvidenceRef
    registered_at: Height
    """Height of the block that registered it."""
    parents: tuple[Aid, ...] = ()
    """Lineage: earlier registrations of the same owner whose watermark this artefact carries
    (an owner's own fine-tune), in aid order. Found by V_auth's derivative check."""
    registered_index: int = 0
    """Position of its tx in that block: orders two registrations of one block."""
    spent_spares: tuple[int, ...] = ()
    """Indices of `evidence.spares` revealed by successful disputes, ascending."""
    overturned: tuple[Aid, ...] = ()
    """The later registrations its owner's upheld disputes overturned, in order (one per spent
    spare, so at most MAX_SPARES)."""
    overturned_by: Overturn | None = None
    """Set when a dispute proved this registration a copy of an earlier one."""

    def validate(self) -> None:
        spent = list(self.spent_spares)
        if spent != sorted(set(spent)) or any(i >= MAX_SPARES for i in spent):
            raise InvalidField("spent_spares", "must be distinct spare indices, ascending")
        raw = [bytes(p) for p in self.parents]
        if any(len(p) != HASH_LEN for p in raw):
            raise InvalidField("parents", f"each parent must be a {HASH_LEN}-byte aid")
        if raw != sorted(set(raw)):
            raise InvalidField("parents", "must be distinct and in aid order")
