"""The `authchain` command.

    authchain keys new [--scheme ml-dsa-65|ed25519] [--out PATH]   create an account key file
    authchain keys show PATH                                        print a key file's account
    authchain node [--config configs/devnet.toml]                   run a chain node
    authchain abci [--config C] [--listen tcp://127.0.0.1:26658]     serve CometBFT (ABCI 2.0)
    authchain testnet [--validators 4] [--dir DIR]                  a CometBFT testnet
    authchain ml-service [--config configs/ml-service.toml]         run the ML verifier
    authchain model train|evidence|verify                           watermarked models
    authchain gateway [--config configs/api.toml]                   run the public API
    authchain register --key K --model DIR [--upload ML_URL]        register a model (signed)
    authchain dispute --key K --model DIR --suspect AID --upload U  overturn a copy with a spare
    authchain watch --key K --model DIR --upload U                  find and dispute copies
    authchain status | devnet | demo                                use a local devnet

One module per group: `keys`, `services` (the four long-running servers), `model`, `network`
(register, status, devnet, testnet, demo); `common` holds the shared options, `fail` (the one
way a command exits with an error) and the signal-driven supervision loop. The ML commands
import torch lazily, so the chain commands run without it.
"""

from __future__ import annotations

import typer

from authchain import __version__
from authchain.cli import keys, model, network, services
from authchain.cli.common import app, out

__all__ = ["app", "keys", "model", "network", "services"]


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
