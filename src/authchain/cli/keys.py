"""`authchain keys new|show`: account key files."""

from __future__ import annotations

from pathlib import Path

import typer

from authchain.chain.crypto import DEFAULT_SCHEME, KeyPair, read_key_file, write_key_file
from authchain.chain.errors import ChainError
from authchain.chain.types import SigScheme
from authchain.cli.common import app, err, fail, failing_on, out

keys_app = typer.Typer(help="Create and inspect account keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

SIGNING_SCHEMES = [s.value for s in SigScheme if s is not SigScheme.UNSIGNED]


@keys_app.command("new")
def keys_new(
    scheme: str = typer.Option(
        DEFAULT_SCHEME.value,
        "--scheme",
        help=f"Signature scheme: {' | '.join(SIGNING_SCHEMES)}.",
    ),
    out_path: Path = typer.Option(
        Path("authchain.key"), "--out", "-o", help="Where to write the key file (mode 0600)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key file."),
) -> None:
    """Create a new account key and print its account id."""
    if scheme not in SIGNING_SCHEMES:
        fail(f"--scheme must be one of {', '.join(SIGNING_SCHEMES)}", code=2)
    key = KeyPair.generate(SigScheme(scheme))
    try:
        write_key_file(out_path, key, overwrite=force)
    except FileExistsError as exc:
        fail(f"{exc} (use --force to replace it)")
    err.print(f"wrote {scheme} key to {out_path} (mode 0600)")
    out.print(key.account.hex())


@keys_app.command("show")
def keys_show(path: Path = typer.Argument(..., help="Key file to read.")) -> None:
    """Print the scheme and account id of a key file (never the private key)."""
    with failing_on(ChainError):
        key = read_key_file(path)
    out.print(f"scheme:  {key.scheme.value}")
    out.print(f"account: {key.account.hex()}")


def read_key(path: Path, option: str = "--key") -> KeyPair:
    """The key file an option names, or exit naming the option."""
    with failing_on(ChainError, what=f"{option}: "):
        return read_key_file(path)
