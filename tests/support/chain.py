"""The chain at unit level: a fixed genesis and keys, an engine over an in-memory store with a
verifier double, and builders for txs and blocks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from authchain.chain import codec, crypto
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.engine import ConsensusEngine
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.state import (
    Genesis,
    InvalidTx,
    StateView,
    Validator,
    compute_state_root,
    try_process_tx,
)
from authchain.chain.storage import MemBlockStore
from authchain.chain.types import (
    ZERO_HASH,
    AccountId,
    Aid,
    Block,
    BlockHash,
    EvidenceHash,
    EvidenceRef,
    Header,
    SigScheme,
    Transaction,
    TxRegisterModel,
    TxTransfer,
    WmProfile,
)
from authchain.chain.validation.ml import (
    Claim,
    DisputeClaim,
    MlUnavailable,
    MlValidity,
    Verdict,
)
from authchain.wire import SKETCH_BYTES

PROPOSER = AccountId(b"\x0a" * 32)


def make_block(
    parent: BlockHash | None, height: int, txs: tuple[Transaction, ...] = (), salt: int = 0
) -> Block:
    """An unsigned block on `parent`; `salt` makes sibling blocks differ."""
    header = Header(
        parent=parent if parent is not None else BlockHash(ZERO_HASH),
        height=height,
        timestamp=1_000 * height + salt,
        proposer=PROPOSER,
        tx_root=codec.compute_tx_root(txs),
        state_root=ZERO_HASH,
    )
    return Block(header, txs)


def make_transfer(nonce: int, amount: int = 1) -> TxTransfer:
    return TxTransfer(b"\x01" * 32, b"\x02" * 32, amount, 0, nonce)  # type: ignore[arg-type]


CHAIN = "authchain-unit"
VALIDATOR = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x01" * 32)
OWNER = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x02" * 32)
PROFILE = WmProfile(0.9, 0.2, -0.05, 0.05)
T0 = 1_700_000_000_000


@dataclass
class FakeVerifier:
    """Answers from a table; `down` simulates an unreachable ML service."""

    failing: set[Aid] = field(default_factory=set)
    down: bool = False
    calls: int = 0
    missing: set[Aid] = field(default_factory=set)
    """Aids whose files are not uploaded (yet)."""
    failing_owners: set[AccountId] = field(default_factory=set)
    """Owners whose claims carry no watermark of theirs (forgers)."""
    lineage: dict[Aid, tuple[Aid, ...]] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    copies: set[Aid] = field(default_factory=set)
    """Suspects that carry the disputing owner's spare (a dispute against them holds)."""

    async def verify(self, claim: Claim) -> Verdict:
        self.calls += 1
        self.claims.append(claim)
        if self.down:
            raise MlUnavailable("connection refused")
        if isinstance(claim, DisputeClaim):
            if claim.suspect_aid in self.copies:
                return Verdict(
                    ok=True, log2_p_value=-90.5, log2_feat_p_value=-200.25,
                    suspect_log2_p_value=-80.0, detail="the suspect carries the spare",
                )  # fmt: skip
            return Verdict(
                ok=False, reason="suspect_does_not_carry", detail="p = 2^-3",
                log2_p_value=-90.5, log2_feat_p_value=-200.25, suspect_log2_p_value=-3.0,
            )  # fmt: skip
        if claim.aid in self.missing:
            return Verdict(ok=False, reason="artefact_not_found", detail="not uploaded")
        if claim.aid in self.failing or claim.owner in self.failing_owners:
            return Verdict(ok=False, reason="watermark_not_found", trigger_acc=0.1)
        return Verdict(
            ok=True, trigger_acc=1.0, feat_dist=0.0, logit_stat=0.0,
            lineage=self.lineage.get(claim.aid, ()),
        )  # fmt: skip


def make_genesis(impersonation: bool = True) -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        timestamp_ms=T0,
        min_fee=0,
        impersonation=impersonation,
        validators=(Validator(VALIDATOR.account, VALIDATOR.scheme, VALIDATOR.public_key),),
        accounts=((OWNER.account, 1_000),),
    )


def make_engine(
    verifier: FakeVerifier | None = None,
    store: MemBlockStore | None = None,
    cap: int = 2,
    impersonation: bool = True,
    config: ConsensusConfig | None = None,
) -> ConsensusEngine:
    metrics = ChainMetrics()
    ml = MlValidity(verifier or FakeVerifier(), metrics=metrics)
    config = config or ConsensusConfig(max_pool_txs=5, max_artefacts_per_block=cap)
    return ConsensusEngine(
        store or MemBlockStore(), make_genesis(impersonation), config, ml, metrics=metrics
    )


def aid(n: int) -> Aid:
    return Aid(bytes([n]) * 32)


def register(n: int, nonce: int, signed: bool = True) -> TxRegisterModel:
    sketch = bytes(SKETCH_BYTES)  # all alike: every earlier registration is among the nearest
    evidence = EvidenceRef(
        "multi_factor_v2", EvidenceHash(bytes([n + 100]) * 32), PROFILE, sketch=sketch
    )
    tx = TxRegisterModel(OWNER.account, aid(n), evidence, fee=0, nonce=nonce)
    return crypto.sign_tx(tx, OWNER, CHAIN) if signed else tx


def build_block(engine: ConsensusEngine, txs: list[Transaction], now: int) -> Block:
    """A correctly linked, signed block with a correct state root, whatever its txs."""
    view = StateView(engine.view().base)
    height = engine.height + 1
    for tx in txs:
        # the block may be meant to be invalid; its state root does not matter then
        with contextlib.suppress(InvalidTx):
            try_process_tx(view, tx, engine.genesis, height, VALIDATOR.account)
    header = Header(
        parent=engine.tip,
        height=height,
        timestamp=now,
        proposer=VALIDATOR.account,
        tx_root=codec.compute_tx_root(txs),
        state_root=compute_state_root(view.items()),
    )
    return crypto.sign_block(Block(header, tuple(txs)), VALIDATOR, CHAIN)


def metric(engine: ConsensusEngine, name: str, **labels: str) -> float:
    assert engine.metrics is not None
    value = engine.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


class CountingState(Mapping[bytes, bytes]):
    """A committed state that counts the reads made through it, and refuses to be scanned
    (what a bounded read cost is asserted with)."""

    def __init__(self, entries: dict[bytes, bytes] | None = None) -> None:
        self.entries = entries if entries is not None else {}
        self.reads = 0

    def __getitem__(self, key: bytes) -> bytes:
        self.reads += 1
        return self.entries[key]

    def __iter__(self) -> Iterator[bytes]:
        raise AssertionError("a bounded read must never scan the state")

    def __len__(self) -> int:
        return len(self.entries)
