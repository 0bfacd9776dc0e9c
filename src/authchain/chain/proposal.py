"""PrepareProposal's policy: which pool txs a proposal holds, and when a claim that V_auth could
not answer is tried again.

`Proposer.propose` packs the candidates (in `pool.proposal_order`) into the proposal's limits,
keeping those that pass the block-tx pipeline with V_auth deferred; runs V_auth on the
registrations it kept; and packs again with the verdicts when a claim failed or got no answer
(leaving a tx out can break a later one of the same signer, or make room for another). What
can never pass is dropped with its reason: a permanent state rule, a used nonce, or V_auth's
answered failure. A claim V_auth could not answer stays pooled, and waits before its next try
(`RetrySchedule`); one whose files are still not uploaded `files_wait_blocks` after its first
try is dropped (`files_unavailable`).
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

from authchain.chain import codec
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.pool import TxRejection
from authchain.chain.state import StateView, TxReason, get_account
from authchain.chain.types import (
    Height,
    Transaction,
    TxDispute,
    TxHash,
    TxRegisterModel,
    get_signer,
)
from authchain.chain.validation.ml import (
    ArtefactClaim,
    Claim,
    FilesUnavailable,
    MlUnavailable,
    MlValidity,
    Verdict,
    verdict_text,
)
from authchain.chain.validation.pipeline import (
    DISPUTE_FAILED,
    BlockContext,
    BlockTxs,
    Verdicts,
    block_claims,
)

log = logging.getLogger(__name__)

PERMANENT = frozenset(
    {
        TxReason.BAD_SIGNATURE,
        TxReason.UNSIGNED_NOT_ALLOWED,
        TxReason.AID_ALREADY_REGISTERED,
        TxReason.CLAIM_BELOW_FLOOR,
        TxReason.NOT_EARLIER_OWNER,
        TxReason.DISPUTE_OWN_MODEL,
        TxReason.NOT_EARLIER,
        TxReason.NO_SUCH_SPARE,
        TxReason.SPARE_COMMITMENT_MISMATCH,
        TxReason.SPARE_SPENT,
        TxReason.ALREADY_OVERTURNED,
    }
)
"""Reasons a tx can never become valid for, so the proposer drops it from the pool."""

MAX_RETRY_WAIT = 64
"""The longest wait, in blocks, before a claim V_auth could not answer is tried again."""


@dataclass(frozen=True, slots=True)
class ProposalLimits:
    """How much one proposal may hold."""

    max_txs: int
    max_bytes: int
    """Sum of the encoded txs' sizes."""
    tx_overhead: int = 0
    """Bytes a tx adds to the block besides its encoding (framing)."""


@dataclass(slots=True)
class Proposal:
    """`prepare_proposal`'s answer: the txs to propose, the pool txs dropped on the way, and
    V_auth's answer for each dropped claim it failed."""

    txs: list[Transaction]
    dropped: dict[TxHash, TxRejection] = field(default_factory=dict)
    failed: dict[TxHash, Verdict] = field(default_factory=dict)
    run: BlockTxs | None = None
    """The last packing's pipeline run, when it ran on exactly `txs` (every tx it tried
    passed); V_auth's verdicts are in it only if it packed with them."""


class RetrySchedule:
    """Registrations V_auth could not answer: when each may be tried again. Each miss doubles
    the wait, up to `MAX_RETRY_WAIT` blocks, so one slow claim cannot slow every block; a
    claim whose files are not uploaded is tried every block, for `files_wait_blocks`."""

    def __init__(self, files_wait_blocks: int) -> None:
        self.files_wait_blocks = files_wait_blocks
        self._waiting: dict[TxHash, Height] = {}
        """Registrations whose files are not uploaded yet: the height they were first tried."""
        self._retry_at: dict[TxHash, tuple[int, Height]] = {}
        """(tries, the height to try again)."""

    def due(self, tx_hash: TxHash, height: Height) -> bool:
        return self._retry_at.get(tx_hash, (0, 0))[1] <= height

    def missed(self, tx_hash: TxHash, height: Height, error: MlUnavailable) -> TxRejection | None:
        """Note that V_auth gave no answer at `height`; the rejection to drop the tx with if
        its files have been missing for too long."""
        if not isinstance(error, FilesUnavailable):
            tries = self._retry_at.get(tx_hash, (0, height))[0] + 1
            wait = min(2 ** (tries - 1), MAX_RETRY_WAIT)
            self._retry_at[tx_hash] = (tries, height + wait)
            log.warning(
                "V_auth unavailable for tx %s (%s): next try in %d blocks",
                tx_hash.short(), error, wait,
            )  # fmt: skip
            return None
        first = self._waiting.setdefault(tx_hash, height)
        waited = height - first
        if waited < self.files_wait_blocks:
            log.info(
                "tx %s waits for its files (%s, %d of %d blocks)", tx_hash.short(),
                error.reason, waited, self.files_wait_blocks,
            )  # fmt: skip
            return None
        self._waiting.pop(tx_hash, None)
        return TxRejection(
            "files_unavailable",
            f"{error.reason} for {waited} blocks (consensus.files_wait_blocks = "
            f"{self.files_wait_blocks}): upload the files and submit it again",
        )

    def forget(self, tx_hashes: Iterable[TxHash]) -> None:
        """These are answered, committed or dropped."""
        for tx_hash in tx_hashes:
            self._waiting.pop(tx_hash, None)
            self._retry_at.pop(tx_hash, None)

    def keep_only(self, pooled: Container[TxHash]) -> None:
        """Forget every tx no longer pooled."""
        self.forget([h for h in (*self._retry_at, *self._waiting) if h not in pooled])


class Proposer:
    """Builds proposals for an application (`Application.prepare_proposal`)."""

    def __init__(self, ml: MlValidity, config: ConsensusConfig) -> None:
        self.ml = ml
        self.config = config
        self.retries = RetrySchedule(config.files_wait_blocks)

    async def propose(
        self,
        view: StateView,
        candidates: Sequence[Transaction],
        ctx: BlockContext,
        limits: ProposalLimits,
    ) -> Proposal:
        """The proposal at `ctx.height` on the committed state `view`."""
        proposal = Proposal([])
        proposal.txs = self.pack(view, candidates, ctx, limits, proposal)
        await self.authenticate(view, ctx, limits, proposal)
        return proposal

    async def authenticate(
        self, view: StateView, ctx: BlockContext, limits: ProposalLimits, proposal: Proposal
    ) -> None:
        """V_auth on the proposal's registrations (within `proposal_verify_secs`): drop the
        answered failures, leave the unanswered ones pooled, and pack again without both."""
        claims = block_claims(view, proposal.txs)
        answers = await self.ml.verify_claims(
            list(claims.values()), budget_secs=self.config.proposal_verify_secs
        )
        verdicts: dict[TxHash, tuple[Claim, Verdict]] = {}
        unanswered: set[TxHash] = set()
        for (tx_hash, claim), answer in zip(claims.items(), answers, strict=True):
            if isinstance(answer, MlUnavailable):
                unanswered.add(tx_hash)  # stays pooled: unavailable is not invalid
                expired = self.retries.missed(tx_hash, ctx.height, answer)
                if expired is not None:
                    proposal.dropped[tx_hash] = expired
                continue
            verdicts[tx_hash] = (claim, answer)
            self.retries.forget([tx_hash])
            if not answer.ok and isinstance(claim, ArtefactClaim):  # a failed dispute is kept
                proposal.failed[tx_hash] = answer
                proposal.dropped[tx_hash] = TxRejection(
                    answer.reason or "ml_auth_failed", verdict_text(answer)
                )
        if unanswered or proposal.failed:
            kept = [tx for tx in proposal.txs if codec.compute_tx_hash(tx) not in unanswered]
            proposal.txs = self.pack(view, kept, ctx, limits, proposal, verdicts)

    def pack(
        self,
        view: StateView,
        candidates: Sequence[Transaction],
        ctx: BlockContext,
        limits: ProposalLimits,
        proposal: Proposal,
        verdicts: Verdicts | None = None,
    ) -> list[Transaction]:
        """The candidates that fit `limits` and pass the block-tx pipeline (V_auth deferred
        where `verdicts` has no answer), in order; those that never can go to
        `proposal.dropped`."""
        run = BlockTxs(view, ctx, verdicts)
        out: list[Transaction] = []
        size = 0
        for tx in candidates:
            if len(out) >= limits.max_txs:
                break
            tx_size = len(codec.encode(tx)) + limits.tx_overhead
            if size + tx_size > limits.max_bytes:
                continue
            if isinstance(tx, TxRegisterModel | TxDispute) and not self.retries.due(
                codec.compute_tx_hash(tx), ctx.height
            ):
                continue  # V_auth could not answer it lately: it waits its turn
            result = run.run(tx)
            if result.code and result.code != DISPUTE_FAILED:
                used = result.reason == TxReason.BAD_NONCE and tx.nonce < _nonce_in(view, tx)
                if result.reason in PERMANENT or used:
                    rejection = TxRejection(result.reason, result.detail)
                    proposal.dropped[codec.compute_tx_hash(tx)] = rejection
                continue
            out.append(tx)
            size += tx_size
        proposal.run = run if len(run.results) == len(out) else None
        return out


def _nonce_in(view: StateView, tx: Transaction) -> int:
    return get_account(view, get_signer(tx)).nonce
