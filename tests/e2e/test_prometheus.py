"""A real Prometheus, configured by configs/prometheus.yml (targets moved to this test's
ports), scrapes a running devnet: node, gateway and ML service; and every query of the Grafana
dashboard (deploy/grafana) names metrics the live endpoints expose and evaluates there."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from authchain.chain import crypto
from authchain.chain.schemas import encode_tx_hex
from authchain.chain.types import TxTransfer
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import Devnet, DevnetPorts
from tests.support.devnet import FUNDED, REPO, seed_body
from tests.support.models import TrainedModel
from tests.support.servers import free_port
from tests.support.tools import need

CHAIN = "authchain-devnet"


@pytest.fixture(scope="module")
def prometheus() -> Path:
    """The `prometheus` binary (skipped without it; a failure under .ci/run)."""
    return need("prometheus", "apt-get install prometheus")


def retarget(config: dict[str, Any], ports: DevnetPorts) -> dict[str, Any]:
    """configs/prometheus.yml with the seed's ports replaced by the test devnet's."""
    moved = {"9898": ports.node_metrics, "9899": ports.gateway_metrics, "8080": ports.ml}
    config["global"]["scrape_interval"] = "1s"
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [
                f"{t.rpartition(':')[0]}:{moved[t.rpartition(':')[2]]}" for t in static["targets"]
            ]
    return config


def query(url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "authchain.json"
METRIC = re.compile(r"\b((?:chain|txpool|consensus|gateway|ml)_[a-z0-9_]+)\b")


def exercise(net: Devnet, model: TrainedModel) -> None:
    """A tx refused at admission and a registration, so the labelled series exist."""
    bad = TxTransfer(FUNDED.account, FUNDED.account, 1, 0, 10_000)  # nonce far ahead
    refused = httpx.post(
        f"{net.rpc_url}/txs", json={"tx": encode_tx_hex(crypto.sign_tx(bad, FUNDED, CHAIN))}
    )
    assert refused.status_code == 400
    gw, ml = GatewayClient(net.gateway_url), MlServiceClient(net.ml_url)
    try:
        ml.upload_artefact(model.artefact)
        ml.upload_evidence(model.evidence)
        status = gw.wait_for_tx(gw.register_unsigned(seed_body(model))["tx_hash"])
        assert status.status == "committed"
    finally:
        gw.close()
        ml.close()


def check_dashboard(url: str, net: Devnet) -> None:
    """Every metric a Grafana panel queries is on a live /metrics endpoint, and Prometheus
    evaluates every panel query."""
    live: set[str] = set()
    for endpoint in (net.node_metrics_url, f"http://127.0.0.1:{net.ports.gateway_metrics}/metrics",
                     f"{net.ml_url}/metrics"):  # fmt: skip
        text = httpx.get(endpoint, timeout=5).text
        live |= {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len(panels) >= 12
    for panel in panels:
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, f"panel {panel['title']!r} queries no authchain metric"
            assert names <= live, f"panel {panel['title']!r}: {sorted(names - live)} not exposed"
            answer = httpx.get(f"{url}/api/v1/query", params={"query": target["expr"]}, timeout=5)
            assert answer.json()["status"] == "success", (panel["title"], answer.text)


def test_prometheus_scrapes_the_devnet(
    tmp_path: Path, watermarked: TrainedModel, prometheus: Path
) -> None:
    ports = DevnetPorts.free()
    net = Devnet(tmp_path / "net", ports=ports, block_time_secs=0.5, repo=REPO)
    config = retarget(yaml.safe_load((REPO / "configs/prometheus.yml").read_text()), ports)
    assert {job["job_name"] for job in config["scrape_configs"]} == {
        "authchain-node", "authchain-gateway", "authchain-ml-service",
    }  # fmt: skip
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    web = f"127.0.0.1:{free_port()}"
    net.start()
    log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [str(prometheus), f"--config.file={config_path}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address={web}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://{web}"
    try:
        deadline = time.monotonic() + 60
        up: dict[str, float] = {}
        height: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                # up at any scrape of the last 5 s: one slow scrape on a loaded CI machine (the
                # scrape timeout is the 1 s interval) is not a target that is down
                up = {
                    r["metric"]["job"]: float(r["value"][1])
                    for r in query(url, "max_over_time(up[5s])")
                }
                height = query(url, "chain_height")
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if len(up) == 3 and all(v == 1 for v in up.values()) and height:
                break
            time.sleep(0.5)
        targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        errors = {t["labels"]["job"]: t.get("lastError") for t in targets}
        assert up == {"authchain-node": 1, "authchain-gateway": 1, "authchain-ml-service": 1}, (
            errors  # why a target is down, as Prometheus saw it
        )
        first = float(height[0]["value"][1])
        time.sleep(3)
        assert float(query(url, "chain_height")[0]["value"][1]) > first  # the series moves
        assert query(url, "ml_verifier_calls_total")
        exercise(net, watermarked)
        check_dashboard(url, net)
    finally:
        prom.terminate()
        prom.wait(30)
        log.close()
        net.stop()
