"""What a node answers about its chain, over the node RPC (`rpc.py`), over ABCI Query (the
CometBFT path, `route`) and so through the gateway: accounts, artefacts, state proofs, tx
status, claims and the application's status. Read-only: nothing here writes the store.

    /status                                  the application's status
    /accounts/{account}                      AccountPublic
    /artefacts/{aid}                         ArtefactPublic
    /accounts/{account}/proof, /artefacts/{aid}/proof    StateProofPublic
    /txs/{tx_hash}                           {"status": committed | queued | rejected, ...}
    /disputes/{tx_hash}                      DisputePublic (a committed dispute's verdict)
    /claims?aid=&parent=&owner=&status=&limit=   {"claims": [ClaimPublic, ...]} (`ClaimQuery`)
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from pydantic import BaseModel

from authchain.chain import codec
from authchain.chain.claims import claim_json, pending_claim
from authchain.chain.errors import InvalidField
from authchain.chain.schemas import (
    AccountPublic,
    ArtefactPublic,
    ClaimQuery,
    DisputePublic,
    StateProofPublic,
    artefact_to_public,
    to_json,
    tx_to_json,
)
from authchain.chain.state import (
    ACCOUNT_PREFIX,
    ARTEFACT_PREFIX,
    Account,
    get_account,
    get_artefact,
    get_dispute,
    get_usage,
)
from authchain.chain.types import AccountId, Aid, ArtefactMetadata, Hash256, TxHash

if TYPE_CHECKING:
    from authchain.chain.app import Application


def account_public(app: Application, account: AccountId) -> AccountPublic:
    """Balance and nonces of an account; `next_nonce` counts pooled txs."""
    view = app.view()
    state = get_account(view, account)
    return AccountPublic(
        account=account,
        balance=state.balance,
        nonce=state.nonce,
        next_nonce=app.pool.next_nonce(view, account),
    )


def dispute_public(app: Application, tx_hash: TxHash) -> DisputePublic | None:
    """A committed dispute's verdict (consensus state), with this node's statistics for it."""
    outcome = get_dispute(app.view(), tx_hash)
    if outcome is None:
        return None
    stats = app.records.dispute_stats(tx_hash)
    measured = msgspec.structs.asdict(stats) if stats is not None else {}
    return DisputePublic(tx_hash=tx_hash, **msgspec.structs.asdict(outcome), **measured)


def artefact_public(app: Application, aid: Aid) -> ArtefactPublic | None:
    """A registered artefact with its use count."""
    view = app.view()
    meta = get_artefact(view, aid)
    if meta is None:
        return None
    usage = get_usage(view, aid)
    return artefact_to_public(meta, usage.uses, usage.last_used_at)


def state_proof(app: Application, key: bytes) -> StateProofPublic:
    """A state entry (or its absence) with its proof against the committed app hash."""
    value = app.committed_value(key)
    proof = app.tree.prove(key)
    record: dict[str, Any] | None = None
    if value is not None:
        kind = Account if key.startswith(ACCOUNT_PREFIX) else ArtefactMetadata
        record = to_json(codec.decode(value, kind))
    return StateProofPublic(
        height=app.height,
        app_hash=app.info().app_hash,
        key=key.hex(),
        value=None if value is None else value.hex(),
        record=record,
        siblings=[Hash256(s) for s in proof.siblings],
        leaf=None if proof.leaf is None else (Hash256(proof.leaf[0]), Hash256(proof.leaf[1])),
    )


def account_proof(app: Application, account: AccountId) -> StateProofPublic:
    return state_proof(app, ACCOUNT_PREFIX + account)


def artefact_proof(app: Application, aid: Aid) -> StateProofPublic:
    return state_proof(app, ARTEFACT_PREFIX + aid)


def tx_status(app: Application, tx_hash: TxHash) -> dict[str, Any] | None:
    """committed (height, index), queued (the tx) or rejected (reason); None if unknown."""
    location = app.store.get_tx_location(tx_hash)
    if location is not None:
        return {"status": "committed", "height": location[0], "index": location[1]}
    pending = app.pool.get(tx_hash)
    if pending is not None:
        return {"status": "queued", "tx": tx_to_json(pending)}
    rejection = app.records.rejection(tx_hash)
    if rejection is not None:
        return {"status": "rejected", "reason": rejection.reason, "detail": rejection.detail}
    return None


def claims(app: Application, query: ClaimQuery) -> list[dict[str, Any]]:
    """Registrations this node knows of, newest first: pending ones (in the pool) before the
    judged ones (claim records, by height), as `query` selects them."""
    out: list[dict[str, Any]] = []
    aid, parent, owner, status, limit = (
        query.aid, query.parent, query.owner, query.status, query.limit,
    )  # fmt: skip
    if status in (None, "pending") and parent is None:
        for tx_hash, tx in app.pool.registrations_pending():
            if (aid is None or tx.aid == aid) and (owner is None or tx.owner == owner):
                out.append(pending_claim(tx_hash, tx))
    if status != "pending" and len(out) < limit:
        judged = app.records.claims.find(
            aid=aid, parent=parent, owner=owner, status=status, limit=limit - len(out)
        )
        out.extend(claim_json(tx_hash, record) for tx_hash, record in judged)
    return out[:limit]


def status(app: Application) -> dict[str, Any]:
    """The application's side of a node's status."""
    info = app.info()
    g = app.genesis
    return {
        "chain_id": g.chain_id,
        "genesis_hash": str(app.genesis_hash),
        "height": info.height,
        "app_hash": info.app_hash.hex(),
        "pool_size": len(app.pool),
        "pending_registrations": app.pool.registrations,
        "min_fee": g.min_fee,
        "impersonation": g.impersonation,
        "validators": [str(v.account) for v in g.validators],
        "misbehaving": app.misbehaving,
        "floors": dataclasses.asdict(g.floors),
        **app.extra_status,
    }


def route(app: Application, path: str) -> tuple[int, bytes]:
    """ABCI Query: `(0, JSON)` for a found record, `(1, JSON error)` otherwise (the paths
    are in this module's docstring)."""
    path, _, params = path.partition("?")
    kind, _, ref = path.strip("/").partition("/")
    try:
        if kind == "status" and not ref:
            return 0, _json(status(app))
        if kind == "claims" and not ref:
            query = ClaimQuery.from_params(dict(parse_qsl(params)))
            return 0, _json({"claims": claims(app, query)})
        ref, _, sub = ref.partition("/")
        if sub not in ("", "proof") or (sub and kind not in ("accounts", "artefacts")):
            return 1, _error("unknown_path", f"no query path {path!r}")
        if kind == "accounts" and sub:
            return 0, _json(account_proof(app, AccountId.from_hex(ref, field="account")))
        if kind == "artefacts" and sub:
            return 0, _json(artefact_proof(app, Aid.from_hex(ref, field="aid")))
        if kind == "accounts":
            return 0, _json(account_public(app, AccountId.from_hex(ref, field="account")))
        if kind == "artefacts":
            artefact = artefact_public(app, Aid.from_hex(ref, field="aid"))
            if artefact is not None:
                return 0, _json(artefact)
            return 1, _error("unknown_artefact", f"artefact {ref} is not registered")
        if kind == "disputes":
            dispute = dispute_public(app, TxHash.from_hex(ref, field="tx_hash"))
            if dispute is not None:
                return 0, _json(dispute)
            return 1, _error("unknown_dispute", f"no committed dispute {ref}")
        if kind == "txs":
            found = tx_status(app, TxHash.from_hex(ref, field="tx_hash"))
            if found is not None:
                return 0, _json(found)
            return 1, _error("unknown_tx", f"no transaction {ref} is known here")
    except InvalidField as exc:
        return 1, _error("invalid_request", str(exc), exc.field)
    return 1, _error("unknown_path", f"no query path {path!r}")


def _json(value: Any) -> bytes:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, separators=(",", ":")).encode()


def _error(reason: str, detail: str, field: str | None = None) -> bytes:
    return _json({"reason": reason, "detail": detail, "field": field})
