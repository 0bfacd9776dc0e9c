"""The devnet every e2e module shares the shape of: its own ML service, node and gateway (real
processes on free loopback ports), started once per module, and clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import Devnet, DevnetPorts

REPO = Path(__file__).resolve().parents[2]


def make_devnet(root: Path) -> Devnet:
    return Devnet(
        root, ports=DevnetPorts.free(), block_time_secs=0.5, ml_timeout_secs=20, repo=REPO
    )


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
