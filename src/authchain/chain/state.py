"""The state machine: accounts, nonces, balances and the artefact registry.

State is a flat map of byte keys to canonical record bytes:

    b"acct/" + AccountId -> Account{balance, nonce}
    b"art/"  + Aid       -> ArtefactMetadata{aid, owner, evidence, registered_at}
    b"use/"  + Aid       -> ModelUsage{uses, last_used_at}
    b"dsp/"  + TxHash    -> DisputeOutcome{earlier_aid, suspect_aid, spare_index, upheld, ...}
    b"skn/"  + C (u16)   -> how many registrations of C classes declared a sketch (u64)
    b"skx/"  + C (u16) + chunk (u32) -> up to SKETCH_CHUNK records of (Aid, sketch), in
                                        registration order: the sketch index

A block is executed on a `StateView` (an overlay over the committed state); its writes, and the
previous values they replace, become one atomic `Commit`. `state_root`
commits to the whole map: the root of the sparse Merkle tree over it (`authchain.chain.smt`),
which the application keeps persisted and updates in O(changes × log n) per block.

Transaction rules (also the CheckTx rules, minus what needs a block):
- signed by its signer for this chain, or unsigned where genesis enables impersonation;
- `nonce` equals the signer's next nonce; `fee >= min_fee`; the signer can pay fee (+ amount);
- TxRegisterModel: the claim meets genesis' floors (evidence strength, and a `wm_profile`
  that only tightens them: see `authchain.floors`); the Aid was never registered.
- TxUseModel: the Aid is registered.
- TxDispute: signed by the owner of `earlier_aid`, which stands (not overturned) and was
  registered before `suspect_aid` (a lower height, or earlier in the same block); the suspect
  is someone else's and stands; the spare exists, is unspent, and `spare_evidence_hash` is its
  commitment. Applying it charges the fee; `apply_overturn` (after V_auth's dispute verdict
  holds) overturns the suspect and spends the spare.
Fees go to the block's proposer.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import msgspec
import numpy as np

from authchain.chain import codec, crypto, smt
from authchain.chain.config import ChainConfig
from authchain.chain.errors import Rejected, SignatureError
from authchain.chain.types import (
    HASH_LEN,
    AccountId,
    Aid,
    Amount,
    ArtefactMetadata,
    EvidenceRef,
    Hash256,
    Height,
    Nonce,
    Overturn,
    Record,
    SigScheme,
    Transaction,
    TxDispute,
    TxHash,
    TxRegisterModel,
    TxTransfer,
    TxUseModel,
    get_signer,
)
from authchain.floors import DEFAULT_FLOORS, Floors, check_profile
from authchain.wire import SKETCH_BYTES

ACCOUNT_PREFIX = b"acct/"
ARTEFACT_PREFIX = b"art/"
USAGE_PREFIX = b"use/"
DISPUTE_PREFIX = b"dsp/"
SKETCH_COUNT_PREFIX = b"skn/"
SKETCH_INDEX_PREFIX = b"skx/"
SKETCH_CHUNK = 256
"""Sketch records per index entry: a registration rewrites one entry of at most 40 KiB, and
finding the nearest among 100,000 registrations reads 391 entries (16 MB)."""
DERIVATIVE_NEIGHBOURS = 1
"""Earlier registrations a claim is checked against exactly: those with the nearest sketches.
Each costs about 0.7 of a plain verification (its triggers run through the candidate), and a
registration may cost at most 2 (benchmarks/derivative.py): one."""
_SKETCH_RECORD = HASH_LEN + SKETCH_BYTES


class Account(Record, frozen=True):
    """An account's balance and the nonce its next transaction must carry."""

    balance: Amount = 0
    nonce: Nonce = 0


class ModelUsage(Record, frozen=True):
    """How often a registered artefact was used, and when last."""

    uses: int = 0
    last_used_at: Height = 0


class DisputeOutcome(Record, frozen=True):
    """A committed dispute's verdict: upheld (the suspect is overturned) or failed, with
    V_auth's reason (the dispute then only paid its fee)."""

    earlier_aid: Aid
    suspect_aid: Aid
    spare_index: int
    upheld: bool
    reason: str
    height: Height


class TxReason(enum.StrEnum):
    """Why a transaction is invalid; stable strings that clients can match on."""

    UNSIGNED_NOT_ALLOWED = "unsigned_not_allowed"
    BAD_SIGNATURE = "bad_signature"
    BAD_NONCE = "bad_nonce"
    FEE_TOO_LOW = "fee_too_low"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    AID_ALREADY_REGISTERED = "aid_already_registered"
    AID_NOT_REGISTERED = "aid_not_registered"
    BALANCE_OVERFLOW = "balance_overflow"
    CLAIM_BELOW_FLOOR = "claim_below_floor"
    NOT_EARLIER_OWNER = "not_earlier_owner"
    DISPUTE_OWN_MODEL = "dispute_own_model"
    NOT_EARLIER = "not_earlier"
    NO_SUCH_SPARE = "no_such_spare"
    SPARE_COMMITMENT_MISMATCH = "spare_commitment_mismatch"
    SPARE_SPENT = "spare_spent"
    ALREADY_OVERTURNED = "already_overturned"


class InvalidTx(Rejected):
    """A transaction breaks a state rule."""

    reason: TxReason


@dataclass(frozen=True, slots=True)
class Validator:
    """A member of the proof-of-authority validator set."""

    account: AccountId
    scheme: SigScheme
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Genesis:
    """The chain's fixed starting point and rules."""

    chain_id: str
    timestamp_ms: int
    min_fee: Amount
    impersonation: bool
    validators: tuple[Validator, ...]
    accounts: tuple[tuple[AccountId, Amount], ...]
    floors: Floors = DEFAULT_FLOORS
    """What every watermark claim must meet (`[genesis.security]`)."""


def genesis_from_config(config: ChainConfig) -> Genesis:
    """The genesis a config describes."""
    g = config.genesis
    return Genesis(
        chain_id=config.chain_id,
        timestamp_ms=g.timestamp_ms,
        min_fee=g.min_fee,
        impersonation=g.impersonation,
        validators=tuple(Validator(v.account, v.scheme, v.public_key) for v in g.validators),
        accounts=tuple((a.account, a.balance) for a in g.accounts),
        floors=g.security.to_floors(),
    )


def genesis_state(genesis: Genesis) -> dict[bytes, bytes]:
    """The state before block 1: funded genesis accounts."""
    return {
        ACCOUNT_PREFIX + account: codec.encode(Account(balance=balance))
        for account, balance in genesis.accounts
    }


@dataclass(slots=True)
class StateView:
    """Reads through to `base`; collects writes without touching it."""

    base: Mapping[bytes, bytes]
    writes: dict[bytes, bytes | None] = field(default_factory=dict)

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def undo(self) -> dict[bytes, bytes | None]:
        """For each written key, the value it had in `base` (None: it did not exist)."""
        return {key: self.base.get(key) for key in self.writes}

    def child(self) -> StateView:
        """A view over this one, for trying a tx without keeping its writes on failure."""
        return StateView(_Overlay(self))

    def absorb(self, child: StateView) -> None:
        """Keep a child view's writes."""
        self.writes.update(child.writes)

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The merged entries whose key starts with `prefix`, in key order."""
        keys = {k for k in self.base if k.startswith(prefix)}
        keys.update(k for k in self.writes if k.startswith(prefix))
        for key in sorted(keys):
            value = self.get(key)
            if value is not None:
                yield key, value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """The merged state, in key order."""
        merged = dict(self.base.items())
        for key, value in self.writes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        for key in sorted(merged):
            yield key, merged[key]


class _Overlay(Mapping[bytes, bytes]):
    """A StateView seen as a read-only mapping (what a child view reads through)."""

    def __init__(self, view: StateView) -> None:
        self._view = view

    def __getitem__(self, key: bytes) -> bytes:
        value = self._view.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[bytes]:
        return (key for key, _ in self._view.items())

    def __len__(self) -> int:
        return sum(1 for _ in self._view.items())


# --- reads -----------------------------------------------------------------------------------


def get_account(view: StateView, account: AccountId) -> Account:
    """An account; a never-seen account has balance 0 and nonce 0."""
    raw = view.get(ACCOUNT_PREFIX + account)
    return Account() if raw is None else _decode_account(raw)


@functools.lru_cache(maxsize=16_384)
def _decode_account(raw: bytes) -> Account:
    """An account entry's bytes decoded, remembered: a tx reads its signer's account three or
    four times across CheckTx and the block phases, and an Account is frozen."""
    return codec.decode(raw, Account)


def get_artefact(view: StateView, aid: Aid) -> ArtefactMetadata | None:
    """The registration of `aid`, if any."""
    raw = view.get(ARTEFACT_PREFIX + aid)
    return None if raw is None else codec.decode(raw, ArtefactMetadata)


def get_registrations(view: StateView) -> list[ArtefactMetadata]:
    """Every registered artefact, in aid order (an O(state) scan: for tools, not blocks)."""
    return [codec.decode(raw, ArtefactMetadata) for _, raw in view.iter_prefix(ARTEFACT_PREFIX)]


def _sketch_keys(num_classes: int) -> tuple[bytes, bytes]:
    classes = num_classes.to_bytes(2, "big")
    return SKETCH_COUNT_PREFIX + classes, SKETCH_INDEX_PREFIX + classes


def index_sketch(view: StateView, aid: Aid, evidence: EvidenceRef) -> None:
    """Add a new registration's declared sketch to the index of its class count."""
    if not evidence.sketch:
        return
    count_key, index_key = _sketch_keys(evidence.num_classes)
    raw = view.get(count_key)
    count = 0 if raw is None else int.from_bytes(raw, "big")
    chunk_key = index_key + (count // SKETCH_CHUNK).to_bytes(4, "big")
    view.put(chunk_key, (view.get(chunk_key) or b"") + bytes(aid) + evidence.sketch)
    view.put(count_key, (count + 1).to_bytes(8, "big"))


def sketch_index(view: StateView, num_classes: int) -> np.ndarray:
    """The sketch index of one class count: one row of `aid || sketch` per registration that
    declared a sketch, in registration order (O(registrations / SKETCH_CHUNK) reads)."""
    count_key, index_key = _sketch_keys(num_classes)
    raw = view.get(count_key)
    count = 0 if raw is None else int.from_bytes(raw, "big")
    chunks = [
        view.get(index_key + i.to_bytes(4, "big")) or b"" for i in range(-(-count // SKETCH_CHUNK))
    ]
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(-1, _SKETCH_RECORD)


def nearest_registrations(
    view: StateView,
    evidence: EvidenceRef,
    *,
    exclude: Aid,
    limit: int = DERIVATIVE_NEIGHBOURS,
    index: np.ndarray | None = None,
) -> list[ArtefactMetadata]:
    """The `limit` earlier registrations of the same class count whose sketches are nearest
    (fewest differing bits) to the claim's, ties broken by aid: what derivative detection
    checks the claim against. One vectorised pass over the class count's `sketch_index`
    (`index`, if the caller has read it already: a block's claims share it), never the
    registrations themselves."""
    if not evidence.sketch:
        return []
    records = sketch_index(view, evidence.num_classes) if index is None else index
    sketches = records[:, HASH_LEN:].view(np.uint64)  # 8 bytes at a time: 16 words a row
    query = np.frombuffer(evidence.sketch, dtype=np.uint64)
    distance = np.bitwise_count(sketches ^ query).sum(axis=1, dtype=np.int64)
    keep = np.arange(len(records))
    if len(records) > limit + 1:  # all within the (limit+1)-th distance (`exclude` may be in)
        keep = np.flatnonzero(distance <= np.partition(distance, limit)[limit])
    ranked = sorted((int(distance[i]), records[i, :HASH_LEN].tobytes()) for i in keep)
    aids = [Aid(aid) for _, aid in ranked if aid != bytes(exclude)][:limit]
    return [meta for aid in aids if (meta := get_artefact(view, aid)) is not None]


def get_usage(view: StateView, aid: Aid) -> ModelUsage:
    """How often `aid` was used."""
    raw = view.get(USAGE_PREFIX + aid)
    return ModelUsage() if raw is None else codec.decode(raw, ModelUsage)


def compute_state_root(items: Iterable[tuple[bytes, bytes]]) -> Hash256:
    """The state root of exactly these entries, computed from scratch (genesis, V_base tests;
    the application updates its persisted tree instead)."""
    return Hash256(smt.root_of(items))


# --- checks and transitions ------------------------------------------------------------------


def check_tx_auth(tx: Transaction, genesis: Genesis) -> None:
    """The tx is signed for this chain, or unsigned where impersonation is on."""
    if crypto.is_unsigned(tx):
        if tx.public_key or tx.signature:
            raise InvalidTx(TxReason.BAD_SIGNATURE, "unsigned tx must carry no key or signature")
        if not genesis.impersonation:
            raise InvalidTx(
                TxReason.UNSIGNED_NOT_ALLOWED,
                "this chain requires signed transactions (sign with `authchain register` "
                "and a key file)",
            )
        return
    try:
        crypto.verify_tx(tx, genesis.chain_id)
    except SignatureError as exc:
        raise InvalidTx(TxReason.BAD_SIGNATURE, str(exc)) from exc


def spend_of(tx: Transaction) -> int:
    """What `tx` takes from its signer: the fee, plus the amount of a transfer."""
    return tx.fee + (tx.amount if isinstance(tx, TxTransfer) else 0)


def check_tx_state(
    view: StateView, tx: Transaction, genesis: Genesis, *, future_nonce_ok: bool = False
) -> None:
    """Nonce, fee, balance and registry rules against `view`.

    With `future_nonce_ok` (pool admission) a nonce above the account's next one is accepted:
    the tx waits in the pool for the ones before it.
    """
    if isinstance(tx, TxRegisterModel):
        check_claim_floors(tx.evidence, genesis.floors)
    signer = get_account(view, get_signer(tx))
    if tx.nonce < signer.nonce:
        raise InvalidTx(
            TxReason.BAD_NONCE, f"nonce {tx.nonce} already used (next is {signer.nonce})"
        )
    if tx.nonce > signer.nonce and not future_nonce_ok:
        raise InvalidTx(TxReason.BAD_NONCE, f"expected nonce {signer.nonce}, got {tx.nonce}")
    if tx.fee < genesis.min_fee:
        raise InvalidTx(TxReason.FEE_TOO_LOW, f"fee {tx.fee} below minimum {genesis.min_fee}")
    if signer.balance < spend_of(tx):
        raise InvalidTx(
            TxReason.INSUFFICIENT_BALANCE, f"balance {signer.balance} < {spend_of(tx)} needed"
        )
    if isinstance(tx, TxRegisterModel) and get_artefact(view, tx.aid) is not None:
        raise InvalidTx(TxReason.AID_ALREADY_REGISTERED, f"aid {tx.aid} is already registered")
    if isinstance(tx, TxUseModel) and get_artefact(view, tx.aid) is None:
        raise InvalidTx(TxReason.AID_NOT_REGISTERED, f"aid {tx.aid} is not registered")
    if isinstance(tx, TxDispute):
        check_dispute(view, tx)


def check_dispute(view: StateView, tx: TxDispute) -> None:
    """A dispute's state rules, each with its own reason."""
    earlier = get_artefact(view, tx.earlier_aid)
    suspect = get_artefact(view, tx.suspect_aid)
    for name, meta, aid in (("earlier_aid", earlier, tx.earlier_aid),
                            ("suspect_aid", suspect, tx.suspect_aid)):  # fmt: skip
        if meta is None:
            raise InvalidTx(TxReason.AID_NOT_REGISTERED, f"{name} {aid} is not registered",
                            field=name)  # fmt: skip
        if meta.overturned_by is not None:
            raise InvalidTx(
                TxReason.ALREADY_OVERTURNED,
                f"{name} {aid} was overturned at height {meta.overturned_by.height}", field=name,
            )  # fmt: skip
    assert earlier is not None and suspect is not None
    if earlier.owner != tx.owner:
        raise InvalidTx(
            TxReason.NOT_EARLIER_OWNER,
            f"earlier_aid {tx.earlier_aid} is owned by {earlier.owner}, not the signer",
            field="owner",
        )  # fmt: skip
    if suspect.owner == tx.owner:
        raise InvalidTx(TxReason.DISPUTE_OWN_MODEL, "the suspect is the signer's own "
                        "registration", field="suspect_aid")  # fmt: skip
    if (earlier.registered_at, earlier.registered_index) >= (
        suspect.registered_at,
        suspect.registered_index,
    ):
        raise InvalidTx(
            TxReason.NOT_EARLIER,
            f"earlier_aid was registered at height {earlier.registered_at} (tx "
            f"{earlier.registered_index}), not before the suspect (height "
            f"{suspect.registered_at}, tx {suspect.registered_index})", field="earlier_aid",
        )  # fmt: skip
    spares = earlier.evidence.spares
    if tx.spare_index >= len(spares):
        raise InvalidTx(
            TxReason.NO_SUCH_SPARE,
            f"spare_index {tx.spare_index}: the earlier registration commits to {len(spares)} "
            "spares", field="spare_index",
        )  # fmt: skip
    if spares[tx.spare_index] != tx.spare_evidence_hash:
        raise InvalidTx(
            TxReason.SPARE_COMMITMENT_MISMATCH,
            f"spare_evidence_hash is not the commitment of spare {tx.spare_index} "
            f"({spares[tx.spare_index]})", field="spare_evidence_hash",
        )  # fmt: skip
    if tx.spare_index in earlier.spent_spares:
        raise InvalidTx(TxReason.SPARE_SPENT, f"spare {tx.spare_index} was spent by an "
                        "earlier dispute", field="spare_index")  # fmt: skip


def check_claim_floors(evidence: EvidenceRef, floors: Floors) -> None:
    """InvalidTx(claim_below_floor) naming the field, unless a model can pass this claim only
    with p-values at or below the chain's floors."""
    p = evidence.wm_profile
    problem = check_profile(
        floors,
        trigger_count=evidence.trigger_count,
        signature_bits=evidence.signature_bits,
        num_classes=evidence.num_classes,
        tau_input=p.tau_input,
        tau_feat=p.tau_feat,
        logit_band_low=p.logit_band_low,
        logit_band_high=p.logit_band_high,
    )
    if problem is not None:
        field, why = problem
        raise InvalidTx(
            TxReason.CLAIM_BELOW_FLOOR, f"evidence.{field}: {why}", field=f"evidence.{field}"
        )


def _credit(view: StateView, account: AccountId, amount: int) -> None:
    acct = get_account(view, account)
    if acct.balance + amount >= 2**64:
        raise InvalidTx(TxReason.BALANCE_OVERFLOW, f"balance of {account} would overflow")
    view.put(ACCOUNT_PREFIX + account, codec.encode(Account(acct.balance + amount, acct.nonce)))


def process_tx(
    view: StateView,
    tx: Transaction,
    genesis: Genesis,
    height: Height,
    proposer: AccountId,
    index: int = 0,
) -> None:
    """Check `tx` (the block's tx `index`) against `view` and apply it; on InvalidTx, `view`
    may hold partial writes. A dispute only pays here: `apply_overturn` does the rest."""
    check_tx_auth(tx, genesis)
    check_tx_state(view, tx, genesis)
    signer_id = get_signer(tx)
    signer = get_account(view, signer_id)
    view.put(
        ACCOUNT_PREFIX + signer_id,
        codec.encode(Account(signer.balance - spend_of(tx), signer.nonce + 1)),
    )
    _credit(view, proposer, tx.fee)
    match tx:
        case TxRegisterModel():
            meta = ArtefactMetadata(
                tx.aid, tx.owner, tx.evidence, registered_at=height, registered_index=index
            )
            view.put(ARTEFACT_PREFIX + tx.aid, codec.encode(meta))
            index_sketch(view, tx.aid, tx.evidence)
        case TxUseModel():
            usage = get_usage(view, tx.aid)
            view.put(USAGE_PREFIX + tx.aid, codec.encode(ModelUsage(usage.uses + 1, height)))
        case TxTransfer():
            _credit(view, tx.recipient, tx.amount)


def get_dispute(view: StateView, tx_hash: TxHash) -> DisputeOutcome | None:
    """A committed dispute's outcome."""
    raw = view.get(DISPUTE_PREFIX + tx_hash)
    return None if raw is None else codec.decode(raw, DisputeOutcome)


def record_dispute(
    view: StateView, tx: TxDispute, tx_hash: TxHash, height: Height, reason: str | None
) -> None:
    """A dispute's verdict, once V_auth answered: `reason` None upholds it (`apply_overturn`),
    otherwise it failed for that reason and only its fee was paid."""
    if reason is None:
        apply_overturn(view, tx, height, tx_hash)
    outcome = DisputeOutcome(
        tx.earlier_aid, tx.suspect_aid, tx.spare_index, reason is None, reason or "", height
    )
    view.put(DISPUTE_PREFIX + tx_hash, codec.encode(outcome))


def apply_overturn(view: StateView, tx: TxDispute, height: Height, tx_hash: TxHash) -> None:
    """A dispute whose verdict holds (its state rules passed in `process_tx`): the suspect is
    overturned, the spare spent."""
    earlier, suspect = get_artefact(view, tx.earlier_aid), get_artefact(view, tx.suspect_aid)
    assert earlier is not None and suspect is not None, "apply_overturn before process_tx"
    spent = tuple(sorted({*earlier.spent_spares, tx.spare_index}))
    won = msgspec.structs.replace(
        earlier, spent_spares=spent, overturned=(*earlier.overturned, suspect.aid)
    )
    view.put(ARTEFACT_PREFIX + earlier.aid, codec.encode(won))
    overturn = Overturn(earlier.aid, earlier.owner, tx_hash, height, tx.spare_index)
    view.put(
        ARTEFACT_PREFIX + suspect.aid,
        codec.encode(msgspec.structs.replace(suspect, overturned_by=overturn)),
    )


def process_lineage(view: StateView, lineage: Mapping[Aid, tuple[Aid, ...]]) -> None:
    """Record V_auth's lineage findings on the block's new registrations."""
    for aid in sorted(lineage):
        parents = tuple(sorted(lineage[aid]))
        meta = get_artefact(view, aid)
        if not parents or meta is None:
            continue
        view.put(
            ARTEFACT_PREFIX + aid, codec.encode(msgspec.structs.replace(meta, parents=parents))
        )


def try_process_tx(
    view: StateView, tx: Transaction, genesis: Genesis, height: Height, proposer: AccountId
) -> None:
    """`process_tx` that leaves `view` untouched when the tx is invalid."""
    child = view.child()
    process_tx(child, tx, genesis, height, proposer)
    view.absorb(child)
