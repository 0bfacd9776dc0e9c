"""The explorer's parts below the browser: the claim records it reads (kept, filtered, pruned),
its routes beside the JSON API's, and its package data. Its pages over real HTTP and proof.js
under node: tests/integration/test_explorer_http.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authchain.chain import codec, queries
from authchain.chain.config import ConsensusConfig
from authchain.chain.schemas import ClaimQuery
from authchain.gateway import explorer
from authchain.gateway.app import create_app
from authchain.gateway.config import ApiSettings
from tests.support.chain import (
    OWNER,
    T0,
    VALIDATOR,
    FakeVerifier,
    aid,
    make_engine,
    register,
)

# --- claim records ------------------------------------------------------------------------------


async def test_claims_record_what_v_auth_said_and_the_lineage() -> None:
    verifier = FakeVerifier(failing={aid(2)}, lineage={aid(3): (aid(1),)})
    engine = make_engine(verifier, cap=4)
    for n, nonce in ((1, 0), (2, 1)):
        engine.submit_tx(register(n, nonce))
    assert [c["status"] for c in queries.claims(engine.app, ClaimQuery())] == ["pending", "pending"]
    await engine.propose_block(VALIDATOR, T0 + 5_000)
    engine.submit_tx(register(3, 1))  # the forgery dropped nonce 1: the owner reuses it
    await engine.propose_block(VALIDATOR, T0 + 10_000)

    claims = {c["aid"]: c for c in queries.claims(engine.app, ClaimQuery())}
    assert claims[str(aid(1))]["status"] == "committed" and claims[str(aid(1))]["height"] == 1
    assert claims[str(aid(1))]["trigger_acc"] == 1.0  # V_auth's statistics are kept
    forged = claims[str(aid(2))]
    assert forged["status"] == "rejected" and forged["reason"] == "watermark_not_found"
    assert forged["trigger_acc"] == 0.1 and forged["height"] == 0  # dropped before block 1
    assert forged["tx_hash"] == str(codec.compute_tx_hash(register(2, 1)))
    assert claims[str(aid(3))]["parents"] == [str(aid(1))]
    assert queries.claims(engine.app, ClaimQuery())[0]["aid"] == str(aid(3))  # newest first

    app = engine.app
    assert [c["aid"] for c in queries.claims(app, ClaimQuery(parent=aid(1)))] == [str(aid(3))]
    assert [c["aid"] for c in queries.claims(app, ClaimQuery(aid=aid(2)))] == [str(aid(2))]
    assert [c["aid"] for c in queries.claims(app, ClaimQuery(status="rejected"))] == [str(aid(2))]
    assert (
        len(queries.claims(app, ClaimQuery(owner=OWNER.account))) == 3
        and queries.claims(app, ClaimQuery(owner=VALIDATOR.account)) == []
    )
    assert len(queries.claims(app, ClaimQuery(limit=1))) == 1
    code, body = app.query(f"/claims?parent={aid(1)}&status=committed")
    assert code == 0 and [c["aid"] for c in json.loads(body)["claims"]] == [str(aid(3))]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=x", "limit"), ("status=lost", "status"), ("aid=zz", "aid"),
     ("owner=12", "owner"), ("colour=red", "colour")],
)  # fmt: skip
def test_a_bad_claims_query_names_its_parameter(query: str, field: str) -> None:
    code, body = make_engine().app.query(f"/claims?{query}")
    assert code == 1 and json.loads(body)["field"] == field


async def test_rejected_claims_are_pruned_and_committed_ones_kept() -> None:
    config = ConsensusConfig(max_pool_txs=5, rejections_kept_blocks=1, max_rejections=1)
    engine = make_engine(FakeVerifier(failing={aid(2)}), cap=4, config=config)
    engine.submit_tx(register(1, 0))
    engine.submit_tx(register(2, 1))
    for i in range(64):  # pruning runs every 64 blocks
        await engine.propose_block(VALIDATOR, T0 + 5_000 * (i + 1))
    statuses = [c["status"] for c in queries.claims(engine.app, ClaimQuery())]
    assert statuses == ["committed"]  # the forgery's record aged out with its rejection
    assert engine.app.records.rejection(codec.compute_tx_hash(register(2, 1))) is None


# --- routes -------------------------------------------------------------------------------------


def test_explorer_pages_do_not_shadow_the_json_api() -> None:
    app = create_app(ApiSettings())
    seen: dict[str, str] = {}
    for route in app.routes:
        path = getattr(route, "path", "")
        if not path:
            continue
        methods = sorted(getattr(route, "methods", None) or [])
        key = f"{methods} {path}"
        assert key not in seen, f"{key} is served twice"
        seen[key] = path


# --- package data -------------------------------------------------------------------------------


def test_every_template_and_static_file_is_package_data() -> None:
    """A wheel (the Docker image installs one) carries every file the explorer serves."""
    import fnmatch
    import tomllib

    root = Path(explorer.__file__).parent
    pyproject = tomllib.loads((root.parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["authchain.gateway"]
    files = [p.relative_to(root).as_posix() for d in ("templates", "static")
             for p in (root / d).rglob("*") if p.is_file()]  # fmt: skip
    assert len(files) > 10
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
