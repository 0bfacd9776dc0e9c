"""A real Prometheus, configured by configs/prometheus.yml (targets moved to this test's
ports), scrapes a running devnet: node, gateway and ML service."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from authchain.devnet import Devnet, DevnetPorts
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the `prometheus` binary is not installed (apt-get install prometheus; .ci/run does)",
)


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


def test_prometheus_scrapes_the_devnet(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
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
        [PROMETHEUS, f"--config.file={config_path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address={web}"],
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
    finally:
        prom.terminate()
        prom.wait(30)
        log.close()
        net.stop()
