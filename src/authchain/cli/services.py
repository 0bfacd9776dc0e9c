"""The long-running services: `authchain node`, `abci`, `gateway` and `ml-service`. Each runs
until Ctrl-C or SIGTERM and then stops cleanly (exit 0)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer

from authchain.chain.config import load_chain_config
from authchain.chain.errors import ConfigError, StorageError
from authchain.cli.common import (
    CHAIN_CONFIG_OPT,
    LOG_LEVEL_OPT,
    app,
    existing,
    failing_on,
    setup_logging,
)


@app.command("node")
def node(config: Path = CHAIN_CONFIG_OPT, log_level: str = LOG_LEVEL_OPT) -> None:
    """Run a chain node: RocksDB store, block producer, RPC server and /metrics.

    Paths in the config (storage.path, node.key_file) are relative to the working directory.
    Stop it with Ctrl-C or SIGTERM; a killed node restarts from its stored tip.
    """
    from authchain.chain.node import run_node

    setup_logging(log_level)
    with failing_on(ConfigError, StorageError, OSError):
        asyncio.run(run_node(load_chain_config(config)))


@app.command("abci")
def abci(
    config: Path = CHAIN_CONFIG_OPT,
    listen: str | None = typer.Option(
        None, "--listen", help="tcp://HOST:PORT or unix:///PATH (default: abci.listen_addr)."
    ),
    log_level: str = LOG_LEVEL_OPT,
) -> None:
    """Serve the authchain application to a CometBFT node over ABCI 2.0 (multi-validator).

    Start it before `cometbft start --proxy_app tcp://127.0.0.1:26658`. It keeps its own
    RocksDB at storage.path and verifies with its own ML service (ml_client.base_url).
    `authchain testnet` starts both for every validator.
    """
    from authchain.chain.abci.run import run_abci

    setup_logging(log_level)
    with failing_on(ConfigError, StorageError, OSError, ValueError):
        overrides = {"abci": {"listen_addr": listen}} if listen else {}
        asyncio.run(run_abci(load_chain_config(config, **overrides)))


@app.command("gateway")
def gateway(
    config: Path = typer.Option(
        Path("configs/api.toml"), "--config", "-c", help="Gateway config (TOML)."
    ),
    log_level: str = LOG_LEVEL_OPT,
) -> None:
    """Run the public API gateway (seed routes + txs, blocks, models, accounts) and /metrics."""
    from prometheus_client import make_asgi_app

    from authchain.gateway.app import create_app
    from authchain.gateway.config import load_api_settings
    from authchain.web import serve_until_signalled

    setup_logging(log_level)
    log = logging.getLogger("authchain.gateway")
    with failing_on(ConfigError, OSError):
        settings = load_api_settings(existing(config))
        app_ = create_app(settings)
        metrics_app = make_asgi_app(registry=app_.state.metrics.registry)
        log.info("metrics exporter listening on http://%s/metrics", settings.metrics_listen_addr)
        log.info("API gateway listening on http://%s", settings.listen_addr)
        log.info("nodes: %s", ", ".join(settings.node_urls))
        asyncio.run(
            serve_until_signalled(
                [(app_, settings.listen_addr), (metrics_app, settings.metrics_listen_addr)]
            )
        )


@app.command("ml-service")
def ml_service(
    config: Path | None = typer.Option(
        Path("configs/ml-service.toml"), "--config", "-c", help="ML service config (TOML)."
    ),
    listen: str | None = typer.Option(
        None,
        "--listen",
        help="host:port instead of listen_addr (0.0.0.0:8080: all interfaces).",
    ),
    log_level: str = LOG_LEVEL_OPT,
) -> None:
    """Run the ML verification service (POST /verify, artefact and evidence uploads, /metrics)."""
    from authchain.ml_service.cli import run_service

    setup_logging(log_level)
    with failing_on(ConfigError, OSError):
        run_service(existing(config), listen, log_level)
