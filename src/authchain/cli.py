"""The `authchain` command.

    authchain keys new [--scheme ml-dsa-65|ed25519] [--out PATH]   create an account key file
    authchain keys show PATH                                        print a key file's account
    authchain node [--config configs/devnet.toml]                   run a chain node

Later commands (gateway, ml-service, devnet, demo, model, register, status) join this app.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from authchain import __version__
from authchain.chain.config import DEFAULT_CONFIG, load_chain_config
from authchain.chain.crypto import DEFAULT_SCHEME, KeyPair, read_key_file, write_key_file
from authchain.chain.errors import ChainError, ConfigError, StorageError
from authchain.chain.types import SigScheme

app = typer.Typer(
    name="authchain",
    help="ML-aware consensus: a chain that only accepts models that carry their owner's watermark.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create and inspect account keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

err = Console(stderr=True)
out = Console()


def _version(value: bool) -> None:
    if value:
        out.print(f"authchain {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """authchain: ML-aware consensus."""


_SIGNING_SCHEMES = [s.value for s in SigScheme if s is not SigScheme.UNSIGNED]


@keys_app.command("new")
def keys_new(
    scheme: str = typer.Option(
        DEFAULT_SCHEME.value,
        "--scheme",
        help=f"Signature scheme: {' | '.join(_SIGNING_SCHEMES)}.",
    ),
    out_path: Path = typer.Option(
        Path("authchain.key"), "--out", "-o", help="Where to write the key file (mode 0600)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key file."),
) -> None:
    """Create a new account key and print its account id."""
    if scheme not in _SIGNING_SCHEMES:
        err.print(f"[red]error:[/] --scheme must be one of {', '.join(_SIGNING_SCHEMES)}")
        raise typer.Exit(2)
    key = KeyPair.generate(SigScheme(scheme))
    try:
        write_key_file(out_path, key, overwrite=force)
    except FileExistsError as exc:
        err.print(f"[red]error:[/] {exc} (use --force to replace it)")
        raise typer.Exit(1) from None
    err.print(f"wrote {scheme} key to {out_path} (mode 0600)")
    out.print(key.account.hex())


@keys_app.command("show")
def keys_show(path: Path = typer.Argument(..., help="Key file to read.")) -> None:
    """Print the scheme and account id of a key file (never the private key)."""
    try:
        key = read_key_file(path)
    except ChainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    out.print(f"scheme:  {key.scheme.value}")
    out.print(f"account: {key.account.hex()}")


LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """Timestamped log lines on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _check_log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_LEVELS)}")
    return value.lower()


@app.command("node")
def node(
    config: Path = typer.Option(
        DEFAULT_CONFIG, "--config", "-c", help="Chain config (TOML); AUTHCHAIN_* env overrides."
    ),
    log_level: str = typer.Option(
        "info", "--log-level", callback=_check_log_level, help="debug | info | warning | error"
    ),
) -> None:
    """Run a chain node: RocksDB store, block producer, RPC server and /metrics.

    Paths in the config (storage.path, node.key_file) are relative to the working directory.
    Stop it with Ctrl-C or SIGTERM; a killed node restarts from its stored tip.
    """
    from authchain.chain.node import run_node

    setup_logging(log_level)
    try:
        asyncio.run(run_node(load_chain_config(config)))
    except (ConfigError, StorageError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
