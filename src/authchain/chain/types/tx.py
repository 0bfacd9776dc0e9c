"""Transactions (seed `types/tx.rs`) and the watermark claim they carry.

Every transaction ends with the same three authentication fields: `sig_scheme`, `public_key`
and `signature`. The signer's account id must equal BLAKE3(public_key); the signature covers
the transaction's canonical bytes with `signature` emptied, prefixed by a domain tag and the
chain id (see `authchain.chain.crypto`). `SigScheme.UNSIGNED` (empty key and signature) is valid
only on chains whose genesis enables devnet impersonation.
"""

from __future__ import annotations

import enum
import re

from authchain.chain.errors import InvalidField
from authchain.chain.types.ids import HASH_LEN, AccountId, Aid, Amount, EvidenceHash, Nonce
from authchain.chain.types.record import Record
from authchain.wire import SKETCH_BYTES

_SCHEME_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MAX_META_LEN = 256
MAX_EVIDENCE_SIZE = 4096
"""Largest trigger count, signature length or class count a claim may state."""
MAX_SPARES = 16
"""Most spare watermarks one registration commits to."""


class SigScheme(enum.StrEnum):
    """Signature scheme of a transaction's signer."""

    ML_DSA_65 = "ml-dsa-65"
    ED25519 = "ed25519"
    UNSIGNED = "unsigned"


class WmProfile(Record, frozen=True):
    """Thresholds a model must meet for its watermark claim to hold (DESIGN.md §5)."""

    tau_input: float
    """Minimum trigger-set accuracy, in [0, 1]."""
    tau_feat: float
    """Maximum bit error rate of the feature signature, in [0, 1]."""
    logit_band_low: float
    """Lower edge of the accepted logit deviation."""
    logit_band_high: float
    """Upper edge of the accepted logit deviation."""

    def validate(self) -> None:
        for name in ("tau_input", "tau_feat"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidField(name, f"must be in [0, 1], got {getattr(self, name)}")
        if self.logit_band_low > self.logit_band_high:
            raise InvalidField(
                "logit_band_low",
                f"must be <= logit_band_high ({self.logit_band_low} > {self.logit_band_high})",
            )


class EvidenceRef(Record, frozen=True):
    """What the owner claims: which scheme, which evidence file, which thresholds, and how
    strong the evidence is.

    The strength (`trigger_count`, `signature_bits`, `num_classes`) is stated in the tx so that
    CheckTx can hold the claim to the chain's floors without the evidence file; V_auth then
    refuses evidence whose real strength differs (`evidence_claim_mismatch`). The defaults are
    what `authchain model train` embeds.
    """

    scheme_id: str
    evidence_hash: EvidenceHash
    wm_profile: WmProfile
    trigger_count: int = 100
    """K: trigger inputs in the evidence."""
    signature_bits: int = 2048
    """n: signature bits in the evidence."""
    num_classes: int = 10
    """C: classes of the model (a trigger label is one of them)."""
    spares: tuple[EvidenceHash, ...] = ()
    """BLAKE3 of each spare watermark's evidence file, in spare order: watermarks embedded with
    the primary under keys only the owner holds, committed here and revealed one at a time,
    each in a dispute against a copy that carries it (docs/SECURITY.md)."""
    sketch: bytes = b""
    """The artefact's function sketch (`SKETCH_BYTES`: a SimHash of its outputs on public
    probes, `ml_service/watermark/sketch.py`). V_auth refuses a claim whose sketch is not its
    artefact's (`sketch_mismatch`); the chain checks the claim exactly against the earlier
    registrations with the nearest sketches (`state.nearest_registrations`)."""

    def validate(self) -> None:
        if not _SCHEME_ID.fullmatch(self.scheme_id):
            raise InvalidField(
                "scheme_id", f"must match {_SCHEME_ID.pattern}, got {self.scheme_id!r:.80}"
            )
        for name in ("trigger_count", "signature_bits", "num_classes"):
            if not 1 <= getattr(self, name) <= MAX_EVIDENCE_SIZE:
                raise InvalidField(name, f"must be in [1, {MAX_EVIDENCE_SIZE}]")
        if len(self.spares) > MAX_SPARES:
            raise InvalidField("spares", f"at most {MAX_SPARES} spare commitments")
        raw = [bytes(h) for h in self.spares]
        if any(len(h) != HASH_LEN for h in raw):
            raise InvalidField("spares", f"each spare commitment must be a {HASH_LEN}-byte hash")
        if len(set(raw)) != len(raw):
            raise InvalidField("spares", "spare commitments must be distinct")
        if len(self.sketch) not in (0, SKETCH_BYTES):
            raise InvalidField("sketch", f"must be {SKETCH_BYTES} bytes, got {len(self.sketch)}")


class ModelUseMetadata(Record, frozen=True):
    """What a model was used for (seed `TxUseModel.metadata`)."""

    task: str
    version: str

    def validate(self) -> None:
        for name in ("task", "version"):
            if len(getattr(self, name)) > MAX_META_LEN:
                raise InvalidField(name, f"longer than {MAX_META_LEN} characters")


class TxRegisterModel(Record, frozen=True, tag=1):
    """Register artefact `aid` as owned by `owner`, with the watermark claim `evidence`."""

    owner: AccountId
    aid: Aid
    evidence: EvidenceRef
    fee: Amount
    nonce: Nonce
    sig_scheme: SigScheme = SigScheme.UNSIGNED
    public_key: bytes = b""
    signature: bytes = b""


class TxUseModel(Record, frozen=True, tag=2):
    """Record that `caller` used the registered artefact `aid`."""

    caller: AccountId
    aid: Aid
    metadata: ModelUseMetadata
    fee: Amount
    nonce: Nonce
    sig_scheme: SigScheme = SigScheme.UNSIGNED
    public_key: bytes = b""
    signature: bytes = b""


class TxTransfer(Record, frozen=True, tag=3):
    """Move `amount` from `sender` to `recipient` (the seed's `from` and `to`)."""

    sender: AccountId
    recipient: AccountId
    amount: Amount
    fee: Amount
    nonce: Nonce
    sig_scheme: SigScheme = SigScheme.UNSIGNED
    public_key: bytes = b""
    signature: bytes = b""


class TxDispute(Record, frozen=True, tag=4):
    """The owner of the registration `earlier_aid` proves that the later registration
    `suspect_aid` is a copy of his model: the suspect carries the spare watermark
    `spare_index`, whose evidence (`spare_evidence_hash`, committed in the earlier
    registration's `evidence.spares`) the owner now reveals to the validators. If it holds,
    the suspect registration is overturned and the spare is spent; if not, the dispute pays
    its fee and changes nothing else."""

    owner: AccountId
    earlier_aid: Aid
    suspect_aid: Aid
    spare_index: int
    spare_evidence_hash: EvidenceHash
    fee: Amount
    nonce: Nonce
    sig_scheme: SigScheme = SigScheme.UNSIGNED
    public_key: bytes = b""
    signature: bytes = b""

    def validate(self) -> None:
        if self.spare_index >= MAX_SPARES:
            raise InvalidField("spare_index", f"must be below {MAX_SPARES}")
        if self.earlier_aid == self.suspect_aid:
            raise InvalidField("suspect_aid", "a registration cannot dispute itself")


Transaction = TxRegisterModel | TxUseModel | TxTransfer | TxDispute
"""Any transaction; encoded with its type tag (1, 2, 3, 4) as the first array element."""


def get_signer(tx: Transaction) -> AccountId:
    """The account that must authorise `tx` and pays its fee."""
    match tx:
        case TxRegisterModel():
            return tx.owner
        case TxUseModel():
            return tx.caller
        case TxTransfer():
            return tx.sender
        case TxDispute():
            return tx.owner
