"""ChainConfig: the devnet file, unknown keys, wrong types, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from authchain.chain.config import ChainConfig, load_chain_config
from authchain.chain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEVNET = ROOT / "configs" / "devnet.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AUTHCHAIN_"):
            monkeypatch.delenv(name)


def test_devnet_file_loads_every_section() -> None:
    cfg = load_chain_config(DEVNET)
    assert cfg.chain_id == "authchain-devnet"
    assert cfg.consensus.block_time_secs == 5
    assert cfg.consensus.max_block_txs == 1000
    assert cfg.consensus.max_block_size_bytes == 1_048_576
    assert cfg.consensus.allow_empty_blocks is True
    assert cfg.storage.path == Path("data/chain-db")
    assert cfg.storage.create_if_missing is True
    assert cfg.ml_client.base_url == "http://127.0.0.1:8080"
    assert cfg.metrics.enabled is True
    assert cfg.metrics.listen_addr == "127.0.0.1:9898"
    assert cfg.rpc.listen_addr == "127.0.0.1:26657"
    assert cfg.genesis.impersonation is True
    assert len(cfg.genesis.validators) == 1
    assert cfg.genesis.accounts[0].balance > 0


def test_devnet_validator_key_matches_genesis() -> None:
    from authchain.chain.crypto import read_key_file

    cfg = load_chain_config(DEVNET)
    assert cfg.node.key_file is not None
    key = read_key_file(ROOT / cfg.node.key_file)
    assert key.account == cfg.genesis.validators[0].account


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chain.toml"
    path.write_text(text)
    return path


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[consensus]\nblock_time_sec = 5\n")
    with pytest.raises(ConfigError) as info:
        load_chain_config(path)
    assert str(path) in str(info.value)
    assert "consensus.block_time_sec: unknown key" in str(info.value)


def test_unknown_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "[consensuss]\nblock_time_secs = 5\n")
    with pytest.raises(ConfigError, match="consensuss: unknown key"):
        load_chain_config(path)


@pytest.mark.parametrize(
    "text,key",
    [
        ('[consensus]\nmax_block_txs = "many"\n', "consensus.max_block_txs"),
        ("[consensus]\nblock_time_secs = -1\n", "consensus.block_time_secs"),
        ('[storage]\ncreate_if_missing = "perhaps"\n', "storage.create_if_missing"),
        ('[metrics]\nlisten_addr = "nowhere"\n', "metrics.listen_addr"),
        ('[ml_client]\nbase_url = "ftp://x"\n', "ml_client.base_url"),
        ('[[genesis.accounts]]\naccount = "xyz"\nbalance = 1\n', "genesis.accounts.0.account"),
        (
            '[[genesis.validators]]\nscheme = "unsigned"\npublic_key = "00"\n',
            "genesis.validators.0.scheme",
        ),
        ("[genesis.security]\ntrigger_p_log2 = 0\n", "genesis.security.trigger_p_log2"),
        ("[genesis.security]\nmax_logit_band = nan\n", "genesis.security.max_logit_band"),
        ("[genesis.security]\nfloor = 64\n", "genesis.security.floor"),
    ],
)
def test_wrong_type_names_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_chain_config(path)
    assert f"{path}: {key}:" in str(info.value)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[consensus\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_chain_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_chain_config(tmp_path / "absent.toml")


def test_env_overrides_file_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(
        tmp_path, 'chain_id = "file"\n[consensus]\nblock_time_secs = 5\nmax_block_txs = 7\n'
    )
    monkeypatch.setenv("AUTHCHAIN_CONSENSUS__BLOCK_TIME_SECS", "0.25")
    monkeypatch.setenv("AUTHCHAIN_CHAIN_ID", "from-env-devnet")
    cfg = load_chain_config(path)
    assert cfg.consensus.block_time_secs == 0.25
    assert cfg.consensus.max_block_txs == 7
    assert cfg.chain_id == "from-env-devnet"


def test_a_chain_without_fees_is_refused_outside_devnets(tmp_path: Path) -> None:
    """Attack: a fee-0 chain lets any fresh key fill the pool for free."""
    path = _write(tmp_path, 'chain_id = "authchain-mainnet"\n[genesis]\nmin_fee = 0\n')
    with pytest.raises(ConfigError, match=r"genesis\.min_fee must be above 0"):
        load_chain_config(path)
    path = _write(tmp_path, 'chain_id = "authchain-mainnet"\n[genesis]\nmin_fee = 1\n')
    assert load_chain_config(path).genesis.min_fee == 1
    path = _write(
        tmp_path,
        'chain_id = "authchain-mainnet"\n[abci]\ninclude_unverified_claims = true\n'
        "[genesis]\nmin_fee = 1\n",
    )
    with pytest.raises(ConfigError, match="misbehaviour switches run only on test chains"):
        load_chain_config(path)


def test_bad_env_override_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS", "lots")
    with pytest.raises(ConfigError) as info:
        load_chain_config(_write(tmp_path, ""))
    assert "environment variable AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS" in str(info.value)


def test_defaults_without_a_file() -> None:
    cfg = load_chain_config(None)
    assert cfg == ChainConfig()
    assert cfg.storage.path == Path("data/chain-db")
    assert cfg.genesis.impersonation is False


def test_duplicate_genesis_account(tmp_path: Path) -> None:
    acct = "ab" * 32
    text = f'[[genesis.accounts]]\naccount = "{acct}"\nbalance = 1\n' * 2
    with pytest.raises(ConfigError, match="listed twice"):
        load_chain_config(_write(tmp_path, text))


def test_devnet_floors_are_the_documented_defaults() -> None:
    from authchain.floors import DEFAULT_FLOORS

    assert load_chain_config(DEVNET).genesis.security.to_floors() == DEFAULT_FLOORS


def test_grpc_transport_refuses_blocks_its_client_cannot_read(tmp_path: Path) -> None:
    """CometBFT's gRPC client reads answers of at most 4 MiB; PrepareProposal's carries the
    block. A larger block cap would halt the chain at the first full block: refused at start."""
    four_mib = 4 * 1024 * 1024
    for size, transport, ok in (
        (four_mib, "grpc", True),
        (four_mib + 1, "grpc", False),
        (64 * four_mib, "socket", True),
    ):
        path = _write(
            tmp_path,
            f"[consensus]\nmax_block_size_bytes = {size}\n[abci]\ntransport = {transport!r}\n",
        )
        if ok:
            assert load_chain_config(path).abci.transport == transport
            continue
        with pytest.raises(ConfigError, match=r"consensus\.max_block_size_bytes = 4194305"):
            load_chain_config(path)
    with pytest.raises(ConfigError, match="transport"):
        load_chain_config(_write(tmp_path, "[abci]\ntransport = 'quic'\n"))


def test_the_apps_mempool_settings_are_checked(tmp_path: Path) -> None:
    config = load_chain_config(
        _write(
            tmp_path,
            "[abci]\nmempool = 'app'\ntxs_listen_addr = '127.0.0.2:26659'\n"
            "mempool_peers = ['http://127.0.0.3:26659/']\n",
        )
    )
    assert config.abci.mempool == "app"
    assert config.abci.mempool_peers == ["http://127.0.0.3:26659"]
    assert load_chain_config(_write(tmp_path, "")).abci.mempool == "cometbft"
    for bad, field in (
        ("mempool = 'both'", "abci.mempool"),
        ("mempool_peers = ['127.0.0.3:26659']", "abci.mempool_peers"),
        ("txs_listen_addr = 'nowhere'", "abci.txs_listen_addr"),
    ):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_chain_config(_write(tmp_path, f"[abci]\n{bad}\n"))
