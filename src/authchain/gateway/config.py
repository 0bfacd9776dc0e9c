"""`ApiSettings` (seed `api-gateway/src/config.rs`): `configs/api.toml` + `AUTHCHAIN_API_*` env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from authchain.settings import HttpUrl, ListenAddr, TomlSettings, load_settings

DEFAULT_CONFIG = Path("configs/api.toml")


class ApiSettings(TomlSettings):
    """Everything the gateway reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="AUTHCHAIN_API_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    listen_addr: ListenAddr = "127.0.0.1:8081"
    metrics_listen_addr: ListenAddr = "127.0.0.1:9899"
    node_urls: list[HttpUrl] = Field(
        default_factory=lambda: ["http://127.0.0.1:26657"], min_length=1
    )
    """Node RPC URLs, tried in order (failover)."""
    comet_rpc_urls: list[HttpUrl] = Field(default_factory=list)
    """CometBFT RPC URLs (a multi-validator network): when set, the gateway reads and writes
    the chain through CometBFT instead of `node_urls`."""
    comet_txs_urls: list[HttpUrl] = Field(default_factory=list)
    """With `comet_rpc_urls`, where the validators' apps hold the pending txs (their
    `abci.mempool = "app"`, CometBFT's mempool off): their tx intakes (`abci.txs_listen_addr`),
    tried in order, to which the gateway submits instead of CometBFT's `broadcast_tx_sync`."""
    node_timeout_secs: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    """Largest accepted request body (413 above it)."""


def load_api_settings(path: Path | None = None) -> ApiSettings:
    """Settings from `path` and the environment; ConfigError naming a bad key."""
    return load_settings(ApiSettings, path)


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    """The default settings (file if present, then env); tests override the app's instead."""
    return load_api_settings(DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
