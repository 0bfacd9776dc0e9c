"""The devnet as e2e tests use it: one on free ports, the seed's register body, its node's
metrics, and the funded account of configs/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from authchain.chain import crypto
from authchain.devnet import Devnet, DevnetPorts
from tests.support.models import SEED_PROFILE, TrainedModel
from tests.support.procs import Samples, scrape

REPO = Path(__file__).resolve().parents[2]
FUNDED = crypto.read_key_file(REPO / "configs" / "devnet-account.key")


def make_devnet(root: Path) -> Devnet:
    return Devnet(
        root, ports=DevnetPorts.free(), block_time_secs=0.5, ml_timeout_secs=20, repo=REPO
    )


def seed_body(model: TrainedModel, **changes: Any) -> dict[str, Any]:
    body = {
        "owner_account_hex": model.owner,
        "aid_hex": model.aid,
        "scheme_id": "multi_factor_v2",
        "evidence_hash_hex": model.evidence_hash,
        "wm_profile": dict(SEED_PROFILE),
        "sketch_hex": model.sketch.hex(),
    }
    body.update(changes)
    return body


def node_metrics(net: Devnet) -> Samples:
    return scrape(net.node_metrics_url)


def invalid_blocks(net: Devnet) -> float:
    return sum(
        v for (name, _), v in node_metrics(net).items() if name == "consensus_blocks_rejected_total"
    )


def shot(page: Page, directory: Path, name: str) -> None:
    """A full-page screenshot in `directory` (the test's temp dir)."""
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
