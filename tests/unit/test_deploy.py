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
    assert set(services) == {"ml-service", "node", "gateway", "prometheus"}
    ports = {p for s in services.values() for p in s.get("ports", [])}
    assert {"8080:8080", "9898:9898", "8081:8081", "9899:9899", "9090:9090"} <= ports


@pytest.mark.parametrize("service", ["ml-service", "node", "gateway"])
def test_built_services_reference_real_files_and_commands(service: str) -> None:
    spec: dict[str, Any] = COMPOSE["services"][service]
    context = (DEPLOY / spec["build"]["context"]).resolve()
    assert context == REPO
    name = Path(spec["build"]["dockerfile"]).name
    assert (context / spec["build"]["dockerfile"]).is_file()
    for instruction, rest in dockerfile(name):
        if instruction == "COPY":
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
    for service in ("node", "gateway"):
        for key, value in COMPOSE["services"][service].get("environment", {}).items():
            monkeypatch.setenv(key, value)
    chain = load_chain_config(REPO / "configs/devnet.toml")
    assert chain.ml_client.base_url == "http://ml-service:8080"
    assert chain.rpc.listen_addr == "0.0.0.0:26657"
    assert load_api_settings(REPO / "configs/api.toml").node_urls == ["http://node:26657"]
    assert load_ml_settings(REPO / "configs/ml-service.toml").model_root == Path("/data/models")


def test_compose_prometheus_scrapes_the_services() -> None:
    volume = COMPOSE["services"]["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((DEPLOY / volume).read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert targets == {"node:9898", "gateway:9899", "ml-service:8080"}
