"""Hypothesis strategies for every protocol type, field by field.

`FIELDS[Type]` maps each field to a strategy, so tests can build instances and also swap one
field for another value (to show that the field is covered by a hash).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from authchain.chain.types import (
    AccountId,
    Aid,
    ArtefactMetadata,
    Block,
    BlockHash,
    EvidenceHash,
    EvidenceRef,
    Hash256,
    Header,
    ModelUseMetadata,
    SigScheme,
    TxRegisterModel,
    TxTransfer,
    TxUseModel,
    WmProfile,
)

raw32 = st.binary(min_size=32, max_size=32)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
finite = st.floats(allow_nan=False, allow_infinity=False)
small_bytes = st.binary(max_size=80)
scheme_ids = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,63}", fullmatch=True)
text = st.text(max_size=40)


def wm_profile_from(t_in: float, t_feat: float, a: float, b: float) -> WmProfile:
    return WmProfile(t_in, t_feat, min(a, b), max(a, b))


wm_profiles = st.builds(wm_profile_from, unit, unit, finite, finite)

FIELDS: dict[type, dict[str, st.SearchStrategy[Any]]] = {
    WmProfile: {
        "tau_input": unit,
        "tau_feat": unit,
        "logit_band_low": st.floats(-1e9, 0.0),
        "logit_band_high": st.floats(0.0, 1e9),
    },
    EvidenceRef: {
        "scheme_id": scheme_ids,
        "evidence_hash": raw32.map(EvidenceHash),
        "wm_profile": wm_profiles,
    },
    ModelUseMetadata: {"task": text, "version": text},
}
_AUTH = {
    "sig_scheme": st.sampled_from(list(SigScheme)),
    "public_key": small_bytes,
    "signature": small_bytes,
}
FIELDS[TxRegisterModel] = {
    "owner": raw32.map(AccountId),
    "aid": raw32.map(Aid),
    "evidence": st.builds(lambda d: EvidenceRef(**d), st.fixed_dictionaries(FIELDS[EvidenceRef])),
    "fee": u64,
    "nonce": u64,
    **_AUTH,
}
FIELDS[TxUseModel] = {
    "caller": raw32.map(AccountId),
    "aid": raw32.map(Aid),
    "metadata": st.builds(ModelUseMetadata, text, text),
    "fee": u64,
    "nonce": u64,
    **_AUTH,
}
FIELDS[TxTransfer] = {
    "sender": raw32.map(AccountId),
    "recipient": raw32.map(AccountId),
    "amount": u64,
    "fee": u64,
    "nonce": u64,
    **_AUTH,
}
FIELDS[Header] = {
    "parent": raw32.map(BlockHash),
    "height": u64,
    "timestamp": u64,
    "proposer": raw32.map(AccountId),
    "tx_root": raw32.map(Hash256),
    "state_root": raw32.map(Hash256),
    "pos_proof": small_bytes,
}


def records(kind: type) -> st.SearchStrategy[Any]:
    """Instances of `kind` built from its field strategies."""
    return st.fixed_dictionaries(FIELDS[kind]).map(lambda d: kind(**d))


transactions = st.one_of(records(TxRegisterModel), records(TxUseModel), records(TxTransfer))
headers = records(Header)
blocks = st.builds(Block, headers, st.lists(transactions, max_size=4).map(tuple), small_bytes)
FIELDS[Block] = {
    "header": headers,
    "txs": st.lists(transactions, max_size=4).map(tuple),
    "signature": small_bytes,
}
FIELDS[ArtefactMetadata] = {
    "aid": raw32.map(Aid),
    "owner": raw32.map(AccountId),
    "evidence": records(EvidenceRef),
    "registered_at": u64,
}

ALL_TYPES = list(FIELDS)
