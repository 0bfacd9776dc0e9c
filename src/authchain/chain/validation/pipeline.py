"""The block-tx pipeline: the one place that says what each tx of a block must meet, in the
spirit of the Cosmos SDK's `runTx(mode)`. Every phase of both drivers runs it:

    PrepareProposal   keeps the txs that pass (`Application.prepare_proposal`)
    ProcessProposal   requires every tx to pass (`first_failure` is the block's verdict)
    FinalizeBlock     applies the passing txs and records each tx's result

Each tx, in this order; the first rule it breaks is its result, and only a tx that passes all
of them is applied:
1. it decodes (`invalid_tx`; the CometBFT driver passes None for bytes that do not);
2. a registration: its aid is not registered by an earlier tx of the block (`duplicate_aid`),
   and the block applies at most `max_artefacts` registrations (`too_many_artefacts`); a
   dispute: no earlier dispute of the block names either of its registrations
   (`duplicate_dispute`: it waits for the next block, so that no dispute's state rules depend
   on another's verdict in the same block), and the block holds at most `max_artefacts`
   disputes;
3. V_base's state rules against the state the earlier txs left (`state.process_tx`:
   signature, nonce, fee, balance, the claim's floors, aid not yet registered, a dispute's
   rules);
4. a registration: V_auth's verdict passes (`ml_auth_failed`, with the verifier's account).
   A dispute: V_auth's verdict is recorded either way (`state.record_dispute`). Upheld, it
   overturns the suspect; failed, the tx is still applied, having paid its fee, with result
   code `DISPUTE_FAILED` (a block may hold it: it is not a failure of the block).

Step 4 needs verdicts. Without them (`verdicts=None`, or no verdict for that tx) it is deferred:
the proposer selects with the cheap rules first and then verifies only what it selected, and a
validator runs the cheap rules on a proposal before any V_auth, so a proposer cannot make
validators verify models for a block that fails anyway. Counting only applied txs (step 2)
makes the three phases agree: a proposal holds only passing txs, a valid block has no failing
one, and FinalizeBlock skips exactly the txs that fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from authchain.chain import codec
from authchain.chain.config import ConsensusConfig
from authchain.chain.state import (
    Genesis,
    InvalidTx,
    StateView,
    nearest_registrations,
    process_tx,
    record_dispute,
    sketch_index,
)
from authchain.chain.types import (
    AccountId,
    Aid,
    Height,
    Transaction,
    TxDispute,
    TxHash,
    TxRegisterModel,
)
from authchain.chain.validation.base import BlockReason, InvalidBlock
from authchain.chain.validation.ml import (
    ArtefactClaim,
    Claim,
    Verdict,
    dispute_claim,
    get_lineage,
    make_claim,
    verdict_text,
)

Verdicts = Mapping[TxHash, tuple[Claim, Verdict]]
"""V_auth's answers by tx hash, with the claim each answers (its lineage needs the claim)."""


@dataclass(frozen=True, slots=True)
class TxResult:
    """One tx's outcome: code 0 applied, otherwise skipped with a reason (a plain string: it
    is stored and sent as one)."""

    code: int
    reason: str = ""
    detail: str = ""


APPLIED = TxResult(0)
DISPUTE_FAILED = 2
"""The result code of a dispute whose verdict did not hold: in the block, fee paid, nothing
else changed."""


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a block's txs are judged in, besides the state."""

    genesis: Genesis
    height: Height
    proposer: AccountId
    max_artefacts: int

    @classmethod
    def of(
        cls, genesis: Genesis, config: ConsensusConfig, height: Height, proposer: AccountId
    ) -> BlockContext:
        return cls(genesis, height, proposer, config.max_artefacts_per_block)


class BlockTxs:
    """A block's txs run one at a time on a child of the parent state: `view` holds the
    applied txs' writes, `results` each tx's result, `lineage` what V_auth found for each
    applied registration."""

    def __init__(self, parent: StateView, ctx: BlockContext, verdicts: Verdicts | None = None):
        self.view = parent.child()
        self.ctx = ctx
        self.verdicts = verdicts
        self.results: list[TxResult] = []
        self.lineage: dict[Aid, tuple[Aid, ...]] = {}
        self._registered: set[Aid] = set()
        self._disputed: set[Aid] = set()
        """The registrations the block's included disputes name."""
        self._disputes = 0

    def run(self, tx: Transaction | None) -> TxResult:
        """Judge the next tx, apply it if it passes, and return its result."""
        result = self._judge(tx)
        self.results.append(result)
        return result

    def _judge(self, tx: Transaction | None) -> TxResult:
        if tx is None:
            return TxResult(1, "invalid_tx", "not the canonical encoding of a transaction")
        if isinstance(tx, TxRegisterModel):
            if tx.aid in self._registered:
                return TxResult(
                    1,
                    BlockReason.DUPLICATE_AID.value,
                    f"{tx.aid} is registered earlier in the block",
                )
            if len(self._registered) >= self.ctx.max_artefacts:
                return TxResult(
                    1, BlockReason.TOO_MANY_ARTEFACTS.value,
                    f"more than max_artefacts_per_block = {self.ctx.max_artefacts} registrations",
                )  # fmt: skip
        if isinstance(tx, TxDispute):
            if {tx.suspect_aid, tx.earlier_aid} & self._disputed:
                return TxResult(
                    1, "duplicate_dispute",
                    "an earlier dispute of the block names the same registration: this one "
                    "waits for the next block",
                )  # fmt: skip
            if self._disputes >= self.ctx.max_artefacts:
                return TxResult(
                    1, BlockReason.TOO_MANY_ARTEFACTS.value,
                    f"more than max_artefacts_per_block = {self.ctx.max_artefacts} disputes",
                )  # fmt: skip
        trial = self.view.child()
        index = len(self.results)
        try:
            process_tx(trial, tx, self.ctx.genesis, self.ctx.height, self.ctx.proposer, index)
        except InvalidTx as exc:
            return TxResult(1, str(exc.reason), exc.detail)
        if isinstance(tx, TxDispute):
            return self._dispute(tx, trial)
        if isinstance(tx, TxRegisterModel):
            judged = self._verdict(tx)
            if judged is not None:
                claim, verdict = judged
                if not verdict.ok:
                    return TxResult(1, BlockReason.ML_AUTH_FAILED.value, verdict_text(verdict))
                if isinstance(claim, ArtefactClaim):
                    self.lineage[tx.aid] = get_lineage(claim, verdict)
            self._registered.add(tx.aid)
        self.view.absorb(trial)
        return APPLIED

    def _verdict(self, tx: Transaction) -> tuple[Claim, Verdict] | None:
        """V_auth's answer for `tx`, if there is one yet."""
        return None if self.verdicts is None else self.verdicts.get(codec.compute_tx_hash(tx))

    def _dispute(self, tx: TxDispute, trial: StateView) -> TxResult:
        """A dispute that passed the state rules (its fee is paid in `trial`): recorded with
        V_auth's verdict, if there is one yet."""
        self._disputed.update({tx.suspect_aid, tx.earlier_aid})
        self._disputes += 1
        judged = self._verdict(tx)
        result = APPLIED
        if judged is not None:
            verdict = judged[1]
            reason = None if verdict.ok else (verdict.reason or "dispute_failed")
            record_dispute(trial, tx, codec.compute_tx_hash(tx), self.ctx.height, reason)
            if reason is not None:
                result = TxResult(DISPUTE_FAILED, reason, verdict_text(verdict))
        self.view.absorb(trial)
        return result


def run_block_txs(
    parent: StateView,
    txs: Sequence[Transaction | None],
    ctx: BlockContext,
    verdicts: Verdicts | None = None,
) -> BlockTxs:
    """Every tx of a block through the pipeline, in order."""
    run = BlockTxs(parent, ctx, verdicts)
    for tx in txs:
        run.run(tx)
    return run


def block_claims(parent: StateView, txs: Iterable[Transaction | None]) -> dict[TxHash, Claim]:
    """What V_auth judges in `txs`: each registration's claim, checked against the parent
    state's registrations with the nearest sketches (`nearest_registrations`), and each
    dispute."""
    claims: dict[TxHash, Claim] = {}
    indexes: dict[int, np.ndarray] = {}  # read once per class count, however many claims
    for tx in txs:
        if isinstance(tx, TxRegisterModel):
            classes = tx.evidence.num_classes
            if tx.evidence.sketch and classes not in indexes:
                indexes[classes] = sketch_index(parent, classes)
            nearest = nearest_registrations(
                parent, tx.evidence, exclude=tx.aid, index=indexes.get(classes)
            )
            claims[codec.compute_tx_hash(tx)] = make_claim(tx, nearest)
        elif isinstance(tx, TxDispute):
            claims[codec.compute_tx_hash(tx)] = dispute_claim(tx)
    return claims


BLOCK_REASONS = {
    BlockReason.DUPLICATE_AID.value: BlockReason.DUPLICATE_AID,
    BlockReason.TOO_MANY_ARTEFACTS.value: BlockReason.TOO_MANY_ARTEFACTS,
    BlockReason.ML_AUTH_FAILED.value: BlockReason.ML_AUTH_FAILED,
}
"""A failing tx's reason as the block's; any other (a state rule, undecodable) is invalid_tx."""


def first_failure(results: Sequence[TxResult]) -> InvalidBlock | None:
    """The block's verdict when every tx must pass: the first failing tx, or None (a failed
    dispute is not a failure of the block: it was judged and paid its fee)."""
    for i, result in enumerate(results):
        if result.code and result.code != DISPUTE_FAILED:
            reason = BLOCK_REASONS.get(result.reason, BlockReason.INVALID_TX)
            return InvalidBlock(reason, f"tx {i}: {result.reason}: {result.detail}")
    return None
