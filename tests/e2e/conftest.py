"""The devnet every e2e module shares the shape of: its own ML service, node and gateway (real
processes on free loopback ports), started once per module, and clients for it; and a real
browser for the explorer.

Playwright's own browser download is not used (it needs the network): pages open in Debian's
`/usr/bin/chromium`, which `.ci/run` installs. Without it the browser tests skip, saying so,
except under `.ci/run`, where that is a failure (`tests/support/tools.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from authchain.chain import crypto
from authchain.chain.types import SigScheme
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import Devnet
from tests.support.devnet import make_devnet, seed_body
from tests.support.models import TrainedModel
from tests.support.tools import need

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = make_devnet(tmp_path_factory.mktemp("devnet"))
    net.start()
    yield net
    codes = net.stop()
    assert codes == {"gateway": 0, "node": 0, "ml-service": 0}, codes


@pytest.fixture(scope="module")
def gw(devnet: Devnet) -> Iterator[GatewayClient]:
    client = GatewayClient(devnet.gateway_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def ml(devnet: Devnet) -> Iterator[MlServiceClient]:
    client = MlServiceClient(devnet.ml_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def thief() -> crypto.KeyPair:
    """The thief's account key: he steals models and claims them (a fixed one, so that what
    he trains is the same every run and comes from the model cache)."""
    return crypto.KeyPair.from_seed(SigScheme.ED25519, b"\xd1" * 32)


@pytest.fixture(scope="module")
def owner_registered(
    gw: GatewayClient, ml: MlServiceClient, watermarked: TrainedModel
) -> TrainedModel:
    """The honest owner registers first (the seed's route; devnet impersonation)."""
    ml.upload_artefact(watermarked.artefact)
    ml.upload_evidence(watermarked.evidence)
    status = gw.wait_for_tx(gw.register_unsigned(seed_body(watermarked))["tx_hash"])
    assert status.status == "committed", status
    return watermarked


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need(str(CHROMIUM), "apt-get install chromium")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(chromium), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[str], Page]]:
    """A new browser page on a gateway's URL. At teardown the test fails on any script error,
    CSP violation, or script, style, icon or fetch that did not load (a page itself may be a
    404 on purpose)."""
    errors: list[str] = []
    contexts = []

    def open_on(base_url: str) -> Page:
        context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda r: (
                errors.append(f"{r.status} {r.url}")
                if r.status >= 400 and r.request.resource_type != "document"
                else None
            ),
        )
        return page

    yield open_on
    for context in contexts:
        context.close()
    assert errors == [], errors
