"""What every `authchain` command shares: the app, the consoles, the options that several
commands take, logging, one way to fail, and one way to run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from authchain.chain.config import DEFAULT_CONFIG

app = typer.Typer(
    name="authchain",
    help="ML-aware consensus: a chain that only accepts models that carry their owner's watermark.",
    no_args_is_help=True,
    add_completion=False,
)

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (1: it failed; 2: bad usage)."""
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


@contextlib.contextmanager
def failing_on(*errors: type[Exception], what: str = "", code: int = 1) -> Iterator[None]:
    """Turn `errors` raised inside into `fail` (no traceback), prefixed with `what`."""
    try:
        yield
    except errors as exc:
        fail(f"{what}{exc}", code)


LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """Timestamped log lines on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise


def _check_log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_LEVELS)}")
    return value.lower()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets while inside; the handlers before come back after."""
    stopped = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in signals}
    try:
        yield stopped
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def supervise(stopped: threading.Event, tick: Callable[[], str | None], every: float = 1.0) -> str:
    """Call `tick` every `every` seconds until `stopped` is set (returns "stopped") or `tick`
    returns why it must stop (returned)."""
    while not stopped.wait(every):
        reason = tick()
        if reason is not None:
            return reason
    return "stopped"


# --- options several commands take -----------------------------------------------------------

LOG_LEVEL_OPT = typer.Option(
    "info", "--log-level", callback=_check_log_level, help="debug | info | warning | error"
)
CHAIN_CONFIG_OPT = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", help="Chain config (TOML); AUTHCHAIN_* env overrides."
)
FLOORS_CONFIG_OPT = typer.Option(
    DEFAULT_CONFIG,
    "--chain-config",
    help="Chain config whose [genesis.security] floors apply (defaults when the file is absent).",
)
KEY_OPT = typer.Option(None, "--key", "-k", help="Owner's key file (its account owns the model).")
OWNER_OPT = typer.Option(None, "--owner", help="Owner account id (64 hex), instead of --key.")
GATEWAY_OPT = typer.Option("http://127.0.0.1:8081", "--gateway", help="Gateway (or node RPC) URL.")
FREE_PORTS_OPT = typer.Option(
    False, "--free-ports",
    help="Free loopback ports instead of the seed's 8080/8081/9898/9899/26657 (run beside "
    "another devnet); the URLs are printed.",
)  # fmt: skip
JSON_OPT = typer.Option(False, "--json", help="Print the result as JSON.")
UPLOAD_TOKEN_OPT = typer.Option(
    None, "--upload-token", envvar="AUTHCHAIN_UPLOAD_TOKEN",
    help="The ML service's upload_token, if it has one.",
)  # fmt: skip
OWNER_MODEL_OPT = typer.Option(
    ..., "--model", "-m",
    help="The owner's model directory: model.safetensors and spares/ (from `model train`).",
)  # fmt: skip
SIGNING_KEY_OPT = typer.Option(..., "--key", "-k", help="Owner's key file (signs the tx).")

# a wm_profile, as `register` claims it and `model verify` checks it
TAU_INPUT_OPT = typer.Option(0.9, "--tau-input", min=0.0, max=1.0)
TAU_FEAT_OPT = typer.Option(0.2, "--tau-feat", min=0.0, max=1.0)
BAND_LOW_OPT = typer.Option(-0.05, "--logit-band-low")
BAND_HIGH_OPT = typer.Option(0.05, "--logit-band-high")


def existing(path: Path | None) -> Path | None:
    """`path` if there is such a file (a default config may be absent: then the defaults)."""
    return path if path is not None and path.exists() else None
