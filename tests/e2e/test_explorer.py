"""The explorer in a real browser: headless Debian Chromium driven by Playwright, against a
real devnet (ML service, node, gateway). A user watches the height climb, registers a model and
its fine-tune and follows them to their model pages and lineage, reads why a forgery was
rejected, and checks a tx's inclusion proof in the browser; a tampered header fails the check.
Screenshots of every page go to the test's temp dir.

The browser is Debian's Chromium (`open_page` in conftest.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Page, Route, expect

from authchain.chain import crypto
from authchain.chain.schemas import TxStatus
from authchain.chain.types import Aid, EvidenceHash, SigScheme, TxTransfer, WmProfile
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import Devnet
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.owner import evidence_for
from authchain.ml_service.watermark.embed import EmbedSpec
from tests.support.devnet import FUNDED, seed_body, shot
from tests.support.models import SEED_PROFILE, TrainedModel


@pytest.fixture
def page(open_page: Callable[[str], Page], devnet: Devnet) -> Page:
    return open_page(devnet.gateway_url)


@pytest.fixture(scope="module")
def registered(
    gw: GatewayClient, ml: MlServiceClient, watermarked: TrainedModel, own_finetune: TrainedModel
) -> dict[str, str]:
    """The owner's model and its fine-tune, committed: their registration tx hashes."""
    hashes = {}
    for name, trained in (("model", watermarked), ("finetune", own_finetune)):
        ml.upload_artefact(trained.artefact)
        ml.upload_evidence(trained.evidence)
        tx_hash = gw.register_unsigned(seed_body(trained))["tx_hash"]
        assert gw.wait_for_tx(tx_hash).status == "committed"
        hashes[name] = tx_hash
    return hashes


@pytest.fixture(scope="module")
def forgery(
    gw: GatewayClient, ml: MlServiceClient, watermarked: TrainedModel,
    registered: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, str]:  # fmt: skip
    """A thief's claim on the owner's model, one weight nudged, with his own fresh evidence at
    the floors' profile: rejected by V_auth. (tx hash, aid)"""
    tmp = tmp_path_factory.mktemp("forgery")
    thief = crypto.KeyPair.generate(SigScheme.ED25519)
    loaded = load_artefact(watermarked.artefact)
    with torch.no_grad():
        loaded.model.state_dict()["fc.bias"][0] += 1e-6
    stolen = tmp / "stolen.safetensors"
    stolen.write_bytes(encode_artefact(loaded.model, loaded.arch, loaded.config))
    evidence_for(stolen, bytes(thief.account), tmp / "ev", EmbedSpec())
    aid = ml.upload_artefact(stolen)
    evidence = ml.upload_evidence(tmp / "ev" / "evidence.json")
    tx_hash = gw.register_signed(
        thief, Aid.from_hex(aid), EvidenceHash.from_hex(evidence), WmProfile(**SEED_PROFILE)
    )
    assert gw.wait_for_tx(tx_hash).status == "rejected"
    return tx_hash, aid


def test_overview_shows_the_height_increase(page: Page, tmp_path: Path) -> None:
    page.goto("/")
    height = page.locator("#height")
    first = int(height.inner_text())
    # the live panel re-renders from the gateway: no reload here
    expect(height).not_to_have_text(str(first), timeout=15_000)
    assert int(height.inner_text()) > first
    expect(page.locator("#recent-blocks tbody tr").first).to_be_visible()
    assert page.locator("#rate").inner_text() != "—"  # blocks per minute, from the timestamps
    shot(page, tmp_path, "overview")


def test_a_registered_model_leads_to_its_page_and_lineage(
    page: Page, registered: dict[str, str], watermarked: TrainedModel,
    own_finetune: TrainedModel, tmp_path: Path,
) -> None:  # fmt: skip
    page.goto("/")
    page.get_by_placeholder("height, tx, block, model or account hash").fill(registered["finetune"])
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(f"/tx/{registered['finetune']}$"))
    expect(page.locator("#tx-status")).to_have_text("committed")
    shot(page, tmp_path, "tx-finetune")
    page.locator(f"a[href='/model/{own_finetune.aid}']").first.click()
    expect(page).to_have_url(re.compile(f"/model/{own_finetune.aid}$"))
    expect(page.locator("#model-summary")).to_contain_text(own_finetune.owner)
    # both p-values, against the chain's floors
    expect(page.locator("#trigger-p")).to_have_text(re.compile(r"^2\^-\d+"))
    expect(page.locator("#signature-p")).to_have_text(re.compile(r"^2\^-\d+"))
    expect(page.locator("#verdict")).to_contain_text("2^-64")
    lineage = page.locator("#lineage")
    expect(lineage).to_contain_text("Derived from")
    shot(page, tmp_path, "model-finetune")
    lineage.locator(f"a[href='/model/{watermarked.aid}']").click()  # up to the parent
    expect(page).to_have_url(re.compile(f"/model/{watermarked.aid}$"))
    children = page.locator("#lineage ul.tree li.child")
    expect(children.locator(f"a[href='/model/{own_finetune.aid}']")).to_be_visible()
    shot(page, tmp_path, "model-parent")


def test_a_rejected_forgery_shows_its_reason(
    page: Page, forgery: tuple[str, str], watermarked: TrainedModel, tmp_path: Path
) -> None:
    tx_hash, aid = forgery
    page.goto("/")
    row = page.locator(f"#rejected tr[data-tx='{tx_hash}']")
    expect(row).to_contain_text("trigger_p_above_floor")
    shot(page, tmp_path, "overview-rejected")
    row.locator(f"a[href='/tx/{tx_hash}']").click()
    expect(page.locator("#tx-status")).to_have_text("rejected")
    expect(page.locator("#rejection-reason")).to_contain_text("trigger_p_above_floor")
    expect(page.locator("#rejection-reason")).to_contain_text("feat_p_above_floor")
    expect(page.locator("#rejection-detail")).to_contain_text("floor 2^-64")
    shot(page, tmp_path, "tx-forgery")
    page.goto(f"/model/{aid}")  # the forged aid: never registered, its claim listed
    expect(page.locator("#not-registered")).to_be_visible()
    expect(page.locator(f"#model-claims tr[data-tx='{tx_hash}']")).to_contain_text("rejected")
    shot(page, tmp_path, "model-forgery")


@pytest.fixture(scope="module")
def transfers(gw: GatewayClient) -> list[TxStatus]:
    """Seven signed transfers in one batch, committed: most land in one block, so proofs have
    siblings and the tree is not a power of two."""
    chain_id = gw.status()["chain_id"]
    nonce = gw.account(FUNDED.account)["next_nonce"]
    txs = [
        crypto.sign_tx(TxTransfer(FUNDED.account, FUNDED.account, 1, 0, nonce + i), FUNDED,
                       chain_id)
        for i in range(7)
    ]  # fmt: skip
    results = gw.submit_many(txs).results
    assert all(r.tx_hash is not None for r in results), results
    return [gw.wait_for_tx(str(r.tx_hash)) for r in results]


def test_a_tx_proof_is_checked_in_the_browser(
    page: Page, transfers: list[TxStatus], tmp_path: Path
) -> None:
    biggest = max(transfers, key=lambda s: s.tx_count or 0)
    assert (biggest.tx_count or 0) >= 3, transfers
    same_block = sorted(
        (s for s in transfers if s.height == biggest.height), key=lambda s: s.index or 0
    )
    for status in (same_block[0], same_block[-1]):  # first and last leaf: both proof shapes
        page.goto(f"/tx/{status.tx_hash}")
        result = page.locator("#proof-result")
        expect(result).to_have_class("ok", timeout=10_000)
        expect(result).to_contain_text(f"leaf {status.index} of {status.tx_count}")
        expect(result).to_contain_text("BLAKE3")
    shot(page, tmp_path, "tx-proof")

    def tampered(route: Route) -> None:  # a header whose tx root is not the proof's
        response = route.fetch()
        block = response.json()
        root = block["header"]["tx_root"]
        block["header"]["tx_root"] = ("0" if root[0] != "0" else "1") + root[1:]
        route.fulfill(response=response, body=json.dumps(block))

    page.route(re.compile(r".*/blocks/\d+$"), tampered)
    page.get_by_role("button", name="Check the proof again").click()
    expect(result).to_have_class("bad")
    expect(result).to_contain_text("FAILED")
    shot(page, tmp_path, "tx-proof-tampered")


def test_search_and_block_and_account_pages(
    page: Page, registered: dict[str, str], watermarked: TrainedModel, gw: GatewayClient,
    tmp_path: Path,
) -> None:  # fmt: skip
    height = gw.tx(registered["model"]).height
    page.goto("/")
    page.get_by_placeholder("height, tx, block, model or account hash").fill(str(height))
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#block-height")).to_have_text(str(height))
    expect(page.locator(f"#block-txs a[href='/tx/{registered['model']}']")).to_be_visible()
    shot(page, tmp_path, "block")
    page.goto(f"/search?q={watermarked.owner}")
    expect(page).to_have_url(re.compile(f"/account/{watermarked.owner}$"))
    expect(page.locator("#account-claims")).to_contain_text("committed")
    page.goto("/validator-set")
    expect(page.locator("#validators tbody tr")).to_have_count(1)
    page.goto("/search?q=" + "ab" * 32)
    expect(page.locator("#error")).to_contain_text("no transaction, block, model or account")
    shot(page, tmp_path, "not-found")
