"""`authchain testnet --init-only --compose` (which runs the pinned cometbft to write the
homes) writes configs that name deploy/docker-compose.testnet.yml's services."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from authchain.chain.config import load_chain_config
from authchain.cli import app

REPO = Path(__file__).resolve().parents[2]
TESTNET = yaml.safe_load((REPO / "deploy" / "docker-compose.testnet.yml").read_text())
runner = CliRunner()


def test_init_writes_configs_that_name_the_compose_services(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["testnet", "--init-only", "--compose", "--validators", "4", "--dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    services = TESTNET["services"]
    for i in range(4):
        chain = load_chain_config(tmp_path / f"node{i}" / "authchain.toml")
        assert chain.ml_client.base_url == f"http://ml{i}:8080" and f"ml{i}" in services
        assert chain.abci.listen_addr == "tcp://0.0.0.0:26658"
        assert len(chain.genesis.validators) == 4
        comet = (tmp_path / "cometbft" / f"node{i}" / "config" / "config.toml").read_text()
        assert f'proxy_app = "tcp://app{i}:26658"' in comet and f"app{i}" in services
        for j in range(4):
            assert f"@cometbft{j}:26656" in comet
        command = services[f"app{i}"]["command"]
        assert command[-1] == f"/testnet/node{i}/authchain.toml"
