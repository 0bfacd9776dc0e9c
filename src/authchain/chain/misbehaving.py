"""A Byzantine validator, for test chains only: it proposes registrations without running
V_auth, and accepts any proposal's claims unverified. FinalizeBlock still verifies (otherwise
its app hash would fork from the honest validators'). It exists to show, with a real CometBFT
network, that the honest validators' ProcessProposal refuses what it proposes
(`tests/e2e/test_cometbft.py`); `abci.include_unverified_claims` turns it on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from authchain.chain.app import Application
from authchain.chain.config import is_test_chain
from authchain.chain.proposal import Proposal, ProposalLimits, Proposer
from authchain.chain.state import Genesis, StateView
from authchain.chain.types import AccountId, Height, Transaction, TxRegisterModel
from authchain.chain.validation.pipeline import BlockContext, BlockTxs, Verdicts

log = logging.getLogger(__name__)


class Misbehaviour(Exception):
    """A misbehaviour switch was asked for where it is not allowed."""


class UnverifiedProposer(Proposer):
    """Proposes the registrations that pass the cheap rules, never asking V_auth."""

    async def authenticate(
        self, view: StateView, ctx: BlockContext, limits: ProposalLimits, proposal: Proposal
    ) -> None:
        return


class MisbehavingApplication(Application):
    """`Application` with V_auth left out of PrepareProposal and ProcessProposal."""

    misbehaving: ClassVar[bool] = True

    def __init__(self, store: Any, genesis: Genesis, *args: Any, **kwargs: Any) -> None:
        if not is_test_chain(genesis.chain_id):
            raise Misbehaviour(
                f"misbehaviour switches run only on test chains (chain id ending in -test, "
                f"-testnet or -devnet), not on {genesis.chain_id!r}"
            )
        super().__init__(store, genesis, *args, **kwargs)
        self.proposer = UnverifiedProposer(self.ml, self.config)
        log.warning("MISBEHAVING: proposing and accepting registrations without V_auth")

    async def prepare_proposal(
        self,
        candidates: Sequence[Transaction],
        height: Height,
        proposer: AccountId,
        limits: ProposalLimits,
    ) -> Proposal:
        proposal = await super().prepare_proposal(candidates, height, proposer, limits)
        unverified = sum(isinstance(tx, TxRegisterModel) for tx in proposal.txs)
        if unverified:  # `extra_status` is the driver's (the ABCI server swaps in its own)
            key = "unverified_claims_proposed"
            self.extra_status[key] = self.extra_status.get(key, 0) + unverified
            log.warning("MISBEHAVING: proposing %d registrations without V_auth", unverified)
        return proposal

    async def _authenticate_proposal(
        self, view: StateView, txs: Sequence[Transaction], ctx: BlockContext
    ) -> tuple[Verdicts, BlockTxs] | None:
        return None  # any proposal's claims are accepted unverified
