"""What the chain records about a registered model artefact."""

from __future__ import annotations

from authchain.chain.types.ids import AccountId, Aid, Height
from authchain.chain.types.record import Record
from authchain.chain.types.tx import EvidenceRef


class ArtefactMetadata(Record, frozen=True):
    """A registered artefact: who owns it and what watermark claim was verified."""

    aid: Aid
    owner: AccountId
    evidence: EvidenceRef
    registered_at: Height
    """Height of the block that registered it."""
