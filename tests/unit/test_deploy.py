"""Docker files checked by what can run here: the compose file parses, every file it and the
Dockerfiles reference exists, their commands are real `authchain` commands, and the
environment they set is accepted by the settings classes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from authchain.chain.config import load_chain_config
from authchain.cli import app
from authchain.gateway.config import load_api_settings
from authchain.ml_service.config import load_ml_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
runner = CliRunner()


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(instruction, argument) pairs, continuation lines joined."""
    text = (DEPLOY / "docker" / name).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def dockerfile_env(name: str) -> dict[str, str]:
    env = {}
    for instruction, rest in dockerfile(name):
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_compose_has_the_seed_services_and_ports() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"ml-service", "node", "gateway", "prometheus", "grafana"}
    ports = {p for s in services.values() for p in s.get("ports", [])}
    published = {"127.0.0.1:8080:8080", "127.0.0.1:9898:9898", "127.0.0.1:8081:8081"}
    published |= {"127.0.0.1:9899:9899", "127.0.0.1:9090:9090", "127.0.0.1:3000:3000"}
    assert published <= ports
    assert all(p.startswith("127.0.0.1:") for p in ports)  # nothing on all interfaces


@pytest.mark.parametrize("service", ["ml-service", "node", "gateway"])
def test_built_services_reference_real_files_and_commands(service: str) -> None:
    spec: dict[str, Any] = COMPOSE["services"][service]
    context = (DEPLOY / spec["build"]["context"]).resolve()
    assert context == REPO
    name = Path(spec["build"]["dockerfile"]).name
    assert (context / spec["build"]["dockerfile"]).is_file()
    stages = {r.split()[-1] for i, r in dockerfile(name) if i == "FROM" and " AS " in r.upper()}
    for instruction, rest in dockerfile(name):
        if instruction == "COPY" and rest.startswith("--from="):
            assert rest.split()[0].removeprefix("--from=") in stages  # a build stage's files
        elif instruction == "COPY":
            for source in rest.split()[:-1]:
                assert (context / source).exists(), f"{name}: COPY {source} does not exist"
        if instruction in ("CMD", "ENTRYPOINT"):
            json.loads(rest)  # exec form
    entry = json.loads(dict(dockerfile(name))["ENTRYPOINT"])
    assert entry == ["authchain"]
    for command in (json.loads(dict(dockerfile(name))["CMD"]), spec["command"]):
        help_result = runner.invoke(app, [command[0], "--help"])
        assert help_result.exit_code == 0, f"{command}: not an authchain command"
        for option in (a for a in command[1:] if a.startswith("--")):
            assert option in help_result.output, f"{command}: {option} is not an option"
        config = command[command.index("--config") + 1]
        assert (REPO / config).is_file()


def test_the_environment_the_images_set_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("Dockerfile.chain", "Dockerfile.ml-service"):
        for key, value in dockerfile_env(name).items():
            monkeypatch.setenv(key, value)
    for service in ("node", "gateway", "ml-service"):
        for key, value in COMPOSE["services"][service].get("environment", {}).items():
            monkeypatch.setenv(key, value)
    chain = load_chain_config(REPO / "configs/devnet.toml")
    assert chain.ml_client.base_url == "http://ml-service:8080"
    assert chain.rpc.listen_addr == "0.0.0.0:26657"
    assert load_api_settings(REPO / "configs/api.toml").node_urls == ["http://node:26657"]
    ml = load_ml_settings(REPO / "configs/ml-service.toml")
    assert ml.model_root == Path("/data/models")
    assert ml.upload_token is not None  # it listens on all interfaces: uploads need the token


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    """The mounted provisioning names the compose Prometheus with the uid every panel uses, and
    the home dashboard is the mounted JSON (its queries are checked live in
    tests/e2e/test_prometheus.py)."""
    grafana = COMPOSE["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":") for v in grafana["volumes"])
    for source in mounts:
        assert (DEPLOY / source).is_dir(), source
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in COMPOSE["services"]
    provider = yaml.safe_load((provisioning / "dashboards" / "authchain.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/dashboards"] == path
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/authchain.json"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "authchain.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_compose_prometheus_scrapes_the_services() -> None:
    volume = COMPOSE["services"]["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((DEPLOY / volume).read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert targets == {"node:9898", "gateway:9899", "ml-service:8080"}


TESTNET = yaml.safe_load((DEPLOY / "docker-compose.testnet.yml").read_text())


def test_testnet_compose_runs_four_validators_of_real_commands() -> None:
    services = TESTNET["services"]
    for i in range(4):
        assert {f"ml{i}", f"app{i}", f"cometbft{i}"} <= set(services)
        assert services[f"cometbft{i}"]["entrypoint"] == ["cometbft"]
    for name, spec in services.items():
        if spec.get("entrypoint") == ["cometbft"]:
            continue
        command = spec["command"]
        help_result = runner.invoke(app, [command[0], "--help"])
        assert help_result.exit_code == 0, f"{name}: {command} is not an authchain command"
        for option in (a for a in command[1:] if a.startswith("--")):
            assert option in help_result.output, f"{name}: {option} is not an option"
    assert services["gateway"]["ports"] == ["127.0.0.1:8081:8081", "127.0.0.1:9899:9899"]


def test_the_chain_image_pins_the_cometbft_the_project_builds() -> None:
    from authchain.chain.abci.gen import COMETBFT_VERSION

    args = dict(
        rest.split("=", 1) for instruction, rest in dockerfile("Dockerfile.chain")
        if instruction == "ARG"
    )  # fmt: skip
    assert args["COMETBFT_VERSION"] == COMETBFT_VERSION
    makefile = (REPO / "Makefile").read_text()
    assert "src/authchain/chain/abci/gen.py" in makefile  # the Makefile reads the same pin
