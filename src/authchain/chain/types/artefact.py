"""What the chain records about a registered model artefact."""

from __future__ import annotations

from authchain.chain.errors import InvalidField
from authchain.chain.types.ids import HASH_LEN, AccountId, Aid, Height
from authchain.chain.types.record import Record
from authchain.chain.types.tx import EvidenceRef


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

    def validate(self) -> None:
        raw = [bytes(p) for p in self.parents]
        if any(len(p) != HASH_LEN for p in raw):
            raise InvalidField("parents", f"each parent must be a {HASH_LEN}-byte aid")
        if raw != sorted(set(raw)):
            raise InvalidField("parents", "must be distinct and in aid order")
