"""`authchain testnet --init-only --compose` (which runs the pinned cometbft to write the
homes) writes configs that name deploy/docker-compose.testnet.yml's services."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from authchain.chain.config import GRPC_MAX_ANSWER_BYTES, load_chain_config
from authchain.cli import app
from authchain.ml_service.config import load_ml_settings
from authchain.ml_service.peer_auth import read_peer_key
from authchain.testnet import FUNDED_BALANCE, MEMPOOL_BYTES, MEMPOOL_TXS, MIN_FEE, Testnet

REPO = Path(__file__).resolve().parents[2]
TESTNET = yaml.safe_load((REPO / "deploy" / "docker-compose.testnet.yml").read_text())
runner = CliRunner()


def comet_config(root: Path, i: int) -> dict[str, Any]:
    """Validator `i`'s CometBFT config.toml, as written into DIR `root`."""
    return tomllib.loads((root / "cometbft" / f"node{i}" / "config" / "config.toml").read_text())


def test_init_writes_configs_that_name_the_compose_services(tmp_path: Path) -> None:
    user = "ab" * 32  # `--fund`: an account that pays its fees from genesis
    result = runner.invoke(
        app,
        ["testnet", "--init-only", "--compose", "--validators", "4", "--dir", str(tmp_path),
         "--fund", user],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    services = TESTNET["services"]
    intakes = [f"http://app{j}:26659" for j in range(4)]
    gateway = services["gateway"]["environment"]
    assert json.loads(gateway["AUTHCHAIN_API_COMET_TXS_URLS"]) == intakes
    assert services["init"]["command"][-2:] == ["--mempool", "app"]
    for i in range(4):
        chain = load_chain_config(tmp_path / f"node{i}" / "authchain.toml")
        assert chain.ml_client.base_url == f"http://ml{i}:8080" and f"ml{i}" in services
        assert chain.abci.listen_addr == "tcp://0.0.0.0:26658"
        assert len(chain.genesis.validators) == 4
        comet = (tmp_path / "cometbft" / f"node{i}" / "config" / "config.toml").read_text()
        assert f'proxy_app = "tcp://app{i}:26658"' in comet and f"app{i}" in services
        for j in range(4):
            assert f"@cometbft{j}:26656" in comet
        # the apps hold the pending txs (the default): each takes them on its intake, which
        # the gateway submits to, and relays them to the other apps' intakes
        assert tomllib.loads(comet)["mempool"]["type"] == "nop"
        assert chain.abci.mempool == "app"
        assert chain.abci.txs_listen_addr == "0.0.0.0:26659"
        assert chain.abci.mempool_peers == [intakes[j] for j in range(4) if j != i]
        assert chain.genesis.min_fee == MIN_FEE > 0  # filling the pools costs fees
        assert {(str(a.account), a.balance) for a in chain.genesis.accounts} >= {
            (user, FUNDED_BALANCE)
        }
        command = services[f"app{i}"]["command"]
        assert command[-1] == f"/testnet/node{i}/authchain.toml"
        # the ML service: its peers, and the validators alone may read its evidence
        ml = load_ml_settings(tmp_path / f"node{i}" / "ml-service.toml")
        assert services[f"ml{i}"]["command"][-1] == f"/testnet/node{i}/ml-service.toml"
        assert "testnet:/testnet:ro" in services[f"ml{i}"]["volumes"]
        assert ml.peers == [f"http://ml{j}:8080" for j in range(4) if j != i]
        auth = ml.peer_auth
        assert auth.chain_id == chain.chain_id
        assert [bytes.fromhex(v.public_key) for v in auth.validators] == [
            v.public_key for v in chain.genesis.validators
        ]
        home = f"cometbft/node{i}/config/priv_validator_key.json"
        assert str(auth.key_file) == f"/testnet/{home}"
        assert read_peer_key(tmp_path / home).public_key == chain.genesis.validators[i].public_key


def test_init_writes_a_grpc_network_that_cometbft_and_the_app_agree_on(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["testnet", "--init-only", "--validators", "2", "--first-ip", "127.0.0.81",
         "--dir", str(tmp_path), "--abci-transport", "grpc"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for i in range(2):
        chain = load_chain_config(tmp_path / f"node{i}" / "authchain.toml")
        assert chain.abci.transport == "grpc"
        assert chain.abci.listen_addr == f"tcp://127.0.0.{81 + i}:26658"
        assert chain.consensus.max_block_size_bytes <= GRPC_MAX_ANSWER_BYTES
        comet = comet_config(tmp_path, i)
        # grpc-go dials HOST:PORT; it would read tcp://HOST:PORT as a DNS name
        assert (comet["abci"], comet["proxy_app"]) == ("grpc", f"127.0.0.{81 + i}:26658")
    refused = runner.invoke(
        app, ["testnet", "--init-only", "--dir", str(tmp_path / "x"), "--abci-transport", "quic"]
    )
    assert refused.exit_code == 2 and "--abci-transport" in refused.output
    refused = runner.invoke(
        app,
        ["testnet", "--init-only", "--compose", "--dir", str(tmp_path / "y"),
         "--abci-transport", "grpc"],
    )  # fmt: skip
    assert refused.exit_code == 2 and "--compose" in refused.output
    assert not (tmp_path / "y").exists()


def test_init_writes_a_network_whose_apps_hold_the_pending_txs(tmp_path: Path) -> None:
    """`--mempool app`: CometBFT's mempool is off, each app takes txs on its intake and relays
    them to every other validator's. (`tests/e2e/test_app_mempool.py` runs such a network.)"""
    result = runner.invoke(
        app,
        ["testnet", "--init-only", "--validators", "3", "--first-ip", "127.0.0.81",
         "--dir", str(tmp_path), "--mempool", "app"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    intakes = [f"http://127.0.0.{81 + i}:26659" for i in range(3)]
    for i in range(3):
        chain = load_chain_config(tmp_path / f"node{i}" / "authchain.toml")
        assert chain.abci.mempool == "app"
        assert chain.abci.txs_listen_addr == f"127.0.0.{81 + i}:26659"
        assert chain.abci.mempool_peers == intakes[:i] + intakes[i + 1 :]
        comet = comet_config(tmp_path, i)
        assert comet["mempool"]["type"] == "nop"
    default = tmp_path / "default"  # the apps' pools are the default
    assert runner.invoke(app, ["testnet", "--init-only", "--dir", str(default)]).exit_code == 0
    assert load_chain_config(default / "node0" / "authchain.toml").abci.mempool == "app"


def test_init_writes_a_cometbft_mempool_that_holds_only_what_the_apps_can_hold(
    tmp_path: Path,
) -> None:
    """`--mempool cometbft`: CometBFT's mempool holds the pending txs, every tx in it fits in
    the app's pool mirror, and CheckTx knows CometBFT's limits (issue 23)."""
    result = runner.invoke(
        app,
        ["testnet", "--init-only", "--validators", "2", "--first-ip", "127.0.0.85",
         "--dir", str(tmp_path), "--mempool", "cometbft"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for i in range(2):
        chain = load_chain_config(tmp_path / f"node{i}" / "authchain.toml")
        assert chain.abci.mempool == "cometbft" and chain.abci.mempool_peers == []
        comet = comet_config(tmp_path, i)
        mempool = comet["mempool"]
        assert mempool["type"] == "flood"
        assert (mempool["size"], mempool["max_txs_bytes"]) == (MEMPOOL_TXS, MEMPOOL_BYTES)
        assert mempool["recheck"] is True
        assert chain.consensus.max_pool_txs >= 2 * mempool["size"]
        # ... and CheckTx refuses what CometBFT would drop later
        limits = (chain.abci.mempool_size, chain.abci.mempool_max_txs_bytes)
        assert limits == (mempool["size"], mempool["max_txs_bytes"])
        assert chain.genesis.min_fee == MIN_FEE > 0  # filling the mempool costs fees
    again = Testnet(tmp_path, validators=2, first_ip="127.0.0.85")  # the default: "app"
    again.init()  # DIR is reused as written, and the gateway will submit as it was written
    assert again.mempool == "cometbft"
