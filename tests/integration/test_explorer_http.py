"""The explorer served from a gateway in front of a real node RPC on loopback (verifier double),
and `proof.js` run by node against the Python Merkle code's proofs."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import blake3
import httpx
import playwright
import pytest

from authchain.chain import codec, queries
from authchain.chain.config import ChainConfig, ConsensusConfig
from authchain.chain.rpc import RpcContext, create_rpc_app
from authchain.chain.schemas import ClaimQuery
from authchain.chain.types import Aid
from authchain.gateway import explorer
from authchain.gateway.app import create_app
from authchain.gateway.config import ApiSettings
from authchain.gateway.node_client import HttpNodeClient
from tests.support.chain import (
    CHAIN,
    OWNER,
    T0,
    VALIDATOR,
    FakeVerifier,
    aid,
    make_engine,
    register,
)
from tests.support.servers import free_port, serve_app

STATIC = Path(explorer.__file__).parent / "static"
NODE = Path(playwright.__file__).parent / "driver" / "node"
"""The node.js that ships inside the playwright wheel (CI has no other)."""


@pytest.fixture
async def explorer_gw() -> Any:
    engine = make_engine(FakeVerifier(failing={aid(2)}, lineage={aid(3): (aid(1),)}), cap=4)
    rpc = create_rpc_app(
        RpcContext(engine, ChainConfig(chain_id=CHAIN, genesis={"min_fee": 1}), VALIDATOR.account)
    )
    async with serve_app(rpc) as url:
        settings = ApiSettings(node_urls=[url], node_timeout_secs=2)
        app = create_app(settings, HttpNodeClient([url], timeout_secs=2))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as gw:
            engine.submit_tx(register(1, 0))
            engine.submit_tx(register(2, 1))
            await engine.propose_block(VALIDATOR, T0 + 5_000)
            engine.submit_tx(register(3, 1))
            await engine.propose_block(VALIDATOR, T0 + 10_000)
            yield engine, gw


async def test_every_page_renders_with_a_strict_csp(explorer_gw: Any) -> None:
    _, gw = explorer_gw
    forged = codec.compute_tx_hash(register(2, 1))
    pages = {
        "/": [CHAIN, "recent-blocks", str(forged)[:6]],
        "/fragments/overview": ["recent-blocks", "watermark_not_found"],
        "/block/1": ["block-txs", str(codec.compute_tx_hash(register(1, 0)))],
        f"/tx/{forged}": ["rejection-reason", "watermark_not_found"],
        f"/tx/{codec.compute_tx_hash(register(1, 0))}": ["tx-proof", "committed"],
        f"/model/{aid(1)}": [f"/model/{aid(3)}", "Registered fine-tunes"],
        f"/model/{aid(3)}": ["Derived from", f"/model/{aid(1)}"],
        f"/model/{aid(2)}": ["not-registered", "watermark_not_found"],
        f"/account/{OWNER.account}": ["account-claims", str(aid(3))[:6]],
        "/validator-set": [str(VALIDATOR.account)[:6]],
    }
    for path, needles in pages.items():
        answer = await gw.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        for needle in needles:
            assert needle in answer.text, (path, needle)
    assert "<script>" not in (await gw.get("/")).text  # no inline script: the CSP allows none


async def test_the_lineage_tree_is_bounded() -> None:
    """A model with 70 registered fine-tunes: its page shows 60 and says it cut the tree."""
    children: dict[Aid, tuple[Aid, ...]] = {aid(k): (aid(1),) for k in range(2, 72)}
    engine = make_engine(
        FakeVerifier(lineage=children), cap=8, config=ConsensusConfig(max_pool_txs=64)
    )
    rpc = create_rpc_app(
        RpcContext(engine, ChainConfig(chain_id=CHAIN, genesis={"min_fee": 1}), VALIDATOR.account)
    )
    for block, start in enumerate([1, *range(2, 72, 8)]):  # the parent first, alone
        for n in range(start, 2 if start == 1 else min(start + 8, 72)):
            engine.submit_tx(register(n, n - 1))
        await engine.propose_block(VALIDATOR, T0 + 5_000 * (block + 1))
    assert len(queries.claims(engine.app, ClaimQuery(parent=aid(1), limit=100))) == 70
    async with serve_app(rpc) as url:
        app = create_app(ApiSettings(node_urls=[url]), HttpNodeClient([url], timeout_secs=5))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as gw:
            page = (await gw.get(f"/model/{aid(1)}")).text
    assert page.count('class="child"') == 60 and "lineage-truncated" in page


async def test_a_pool_full_of_registrations_leaves_the_judged_ones_on_the_overview() -> None:
    """111 registrations pending, more than one claims answer holds: the overview still shows
    the committed model and the rejected forgery, with 10 pending rows."""
    config = ConsensusConfig(max_pool_txs=200, max_pool_txs_per_sender=200, max_nonce_gap=200)
    engine = make_engine(FakeVerifier(failing={aid(2)}), cap=4, config=config)
    engine.submit_tx(register(1, 0))
    engine.submit_tx(register(2, 1))
    await engine.propose_block(VALIDATOR, T0 + 5_000)
    for n in range(10, 121):
        engine.submit_tx(register(n, n - 9))
    assert len(queries.claims(engine.app, ClaimQuery(status="pending", limit=100))) == 100
    rpc = create_rpc_app(
        RpcContext(engine, ChainConfig(chain_id=CHAIN, genesis={"min_fee": 1}), VALIDATOR.account)
    )
    async with serve_app(rpc) as url:
        app = create_app(ApiSettings(node_urls=[url]), HttpNodeClient([url], timeout_secs=5))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as gw:
            page = (await gw.get("/")).text
    tables = {
        name: page.split(f'id="{name}"')[1].split("</table>")[0]
        for name in ("pending", "committed", "rejected")
    }
    assert tables["pending"].count('class="claim pending"') == explorer.LIVE_CLAIMS
    assert f'data-aid="{aid(1)}"' in tables["committed"]
    assert f'data-tx="{codec.compute_tx_hash(register(2, 1))}"' in tables["rejected"]


async def test_search_goes_to_what_a_query_names(explorer_gw: Any) -> None:
    engine, gw = explorer_gw
    tx = codec.compute_tx_hash(register(1, 0))
    block = engine.store.get_block_hash(1)
    forged_aid = aid(2)  # never registered: its claim is found
    for q, target in (
        ("2", "/block/2"), (f" {tx} ", f"/tx/{tx}"), (str(block), f"/block/{block}"),
        (str(aid(1)), f"/model/{aid(1)}"), (str(forged_aid), f"/model/{forged_aid}"),
        (str(OWNER.account), f"/account/{OWNER.account}"),
        (str(tx).upper(), f"/tx/{tx}"),
    ):  # fmt: skip
        answer = await gw.get("/search", params={"q": q})
        assert answer.status_code == 303 and answer.headers["location"] == target, q
    nothing = await gw.get("/search", params={"q": "ab" * 32})
    assert nothing.status_code == 404 and "no transaction, block, model or account" in nothing.text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/search?q=<script>", 422, "enter a height or a 64-hex hash"),
        ("/block/-1", 422, "neither a height nor a block hash"),
        ("/block/99", 404, "no block 99"),
        ("/tx/xyz", 422, "not a transaction hash"),
        ("/tx/" + "ab" * 32, 404, "no transaction"),
        ("/model/12", 422, "not an artefact id"),
        ("/model/" + "ab" * 32, 404, "no model"),
        ("/account/nope", 422, "not an account id"),
    ],
)
async def test_bad_input_gets_an_html_page_naming_it(
    explorer_gw: Any, path: str, status: int, says: str
) -> None:
    _, gw = explorer_gw
    answer = await gw.get(path)
    assert answer.status_code == status and says in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "<script>" not in answer.text.split("<main>")[1]  # what was typed is escaped


async def test_an_unreachable_node_gives_a_503_page() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(ApiSettings(node_urls=[dead]), HttpNodeClient([dead], timeout_secs=1))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as gw:
        answer = await gw.get("/")
    assert answer.status_code == 503 and "node_unavailable" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


async def test_json_routes_behind_the_explorer(explorer_gw: Any) -> None:
    engine, gw = explorer_gw
    blocks = (await gw.get("/blocks", params={"limit": 2})).json()["blocks"]
    assert [b["height"] for b in blocks] == [2, 1]
    assert blocks[1]["hash"] == str(engine.store.get_block_hash(1))
    assert (await gw.get("/blocks", params={"limit": 101})).json()["field"] == "limit"
    claims = (await gw.get("/claims", params={"status": "rejected"})).json()["claims"]
    assert [c["aid"] for c in claims] == [str(aid(2))]
    assert (await gw.get("/claims", params={"aid": "zz"})).json()["field"] == "aid"
    validators = (await gw.get("/validators")).json()["validators"]
    assert [v["account"] for v in validators] == [str(VALIDATOR.account)]
    status = (await gw.get("/status")).json()
    assert status["floors"]["trigger_p_log2"] == 64


def run_js(script: str) -> Any:
    if not NODE.exists():
        pytest.fail(f"playwright's node is missing at {NODE}")
    done = subprocess.run(
        [str(NODE), "--input-type=module"],
        input=script, capture_output=True, text=True, timeout=60, cwd=STATIC,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_proof_js_agrees_with_the_python_merkle_code() -> None:
    rng = random.Random(7)
    cases = []
    for size in [*range(1, 18), 31, 64, 100]:
        leaves = [rng.randbytes(32) for _ in range(size)]
        root = codec.merkle_root(leaves)
        for index in range(size):
            proof = [p.hex() for p in codec.merkle_proof(leaves, index)]
            cases.append([leaves[index].hex(), index, size, proof, root.hex(), True])
            if proof:  # a flipped sibling, a wrong index, a wrong size: all refused
                bad = [("0" if proof[0][0] != "0" else "1") + proof[0][1:], *proof[1:]]
                cases.append([leaves[index].hex(), index, size, bad, root.hex(), False])
                cases.append(
                    [
                        leaves[index].hex(),
                        (index + 1) % size,
                        size,
                        proof,
                        root.hex(),
                        codec.verify_merkle_proof(
                            leaves[index],
                            (index + 1) % size,
                            size,
                            codec.merkle_proof(leaves, index),
                            root,
                        ),
                    ]
                )
            cases.append(
                [
                    leaves[index].hex(),
                    index,
                    size + 1,
                    proof,
                    root.hex(),
                    codec.verify_merkle_proof(
                        leaves[index], index, size + 1, codec.merkle_proof(leaves, index), root
                    ),
                ]
            )
    script = f"""
import {{ verifyInclusion }} from "./proof.js";
import {{ blake3, hexToBytes }} from "./vendor/noble-hashes.js";
const cases = {json.dumps(cases)};
const got = cases.map(([leaf, i, n, proof, root]) =>
  verifyInclusion(hexToBytes(leaf), i, n, proof.map(hexToBytes), hexToBytes(root), blake3));
console.log(JSON.stringify(got));
"""
    got = run_js(script)
    assert got == [c[5] for c in cases]
    genuine = sum([*range(1, 18), 31, 64, 100])
    assert sum(got) >= genuine  # every genuine proof passes: the check is not always false


def test_the_vendored_hashes_match_python() -> None:
    rng = random.Random(3)
    inputs = [b"", b"abc", rng.randbytes(1023), rng.randbytes(1024), rng.randbytes(5000)]
    script = f"""
import {{ blake3, sha256, bytesToHex, hexToBytes }} from "./vendor/noble-hashes.js";
const inputs = {json.dumps([i.hex() for i in inputs])};
console.log(JSON.stringify(inputs.map((h) =>
  [bytesToHex(blake3(hexToBytes(h))), bytesToHex(sha256(hexToBytes(h)))])));
"""

    expected = [[blake3.blake3(i).hexdigest(), hashlib.sha256(i).hexdigest()] for i in inputs]
    assert run_js(script) == expected


def _sha256_tree(leaves: list[bytes], index: int) -> tuple[bytes, list[bytes]]:
    """RFC 6962 root and audit path with SHA-256 (CometBFT's data_hash over tx hashes)."""

    def root(items: list[bytes]) -> bytes:
        if len(items) == 1:
            return hashlib.sha256(b"\x00" + items[0]).digest()
        k = 1 << ((len(items) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + root(items[:k]) + root(items[k:])).digest()

    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if index < lo + k:
            path.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo : lo + k]))
            lo += k
    return root(leaves), path[::-1]


@pytest.mark.parametrize("tamper", ["none", "root", "tx_bytes", "block_hash"])
def test_check_tx_proof_on_a_cometbft_shaped_status(tamper: str) -> None:
    txs = [codec.encode(register(n, n)) for n in range(1, 6)]
    index = 4
    root, path = _sha256_tree([hashlib.sha256(t).digest() for t in txs], index)
    status = {
        "tx_hash": blake3.blake3(txs[index]).hexdigest(), "status": "committed", "height": 7,
        "block_hash": "AB" * 32, "index": index, "tx_count": len(txs), "tx_root": root.hex(),
        "proof": [p.hex() for p in path], "proof_hash": "sha256", "tx_bytes": txs[index].hex(),
    }  # fmt: skip
    header = {"height": "7", "data_hash": root.hex().upper()}
    block_hash = "ab" * 32
    if tamper == "root":
        header["data_hash"] = "00" * 32
    elif tamper == "tx_bytes":
        status["tx_bytes"] = txs[0].hex()
    elif tamper == "block_hash":
        block_hash = "cd" * 32
    script = f"""
import {{ checkTxProof }} from "./proof.js";
const block = {{ hash: {json.dumps(block_hash)}, header: {json.dumps(header)} }};
console.log(JSON.stringify(await checkTxProof({json.dumps(status)}, async () => block)));
"""
    result = run_js(script)
    assert result["ok"] is (tamper == "none"), result
    if tamper == "none":
        assert "SHA-256" in result["why"] and "leaf 4 of 5" in result["why"]
