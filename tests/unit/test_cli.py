"""The `authchain` command: help, `keys`, and the supervision loop and error exit every command
shares."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from authchain.chain.crypto import read_key_file
from authchain.chain.types import SigScheme
from authchain.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "keys" in result.output


def test_keys_new_writes_a_private_key_file(tmp_path: Path) -> None:
    path = tmp_path / "me.key"
    result = runner.invoke(app, ["keys", "new", "--scheme", "ed25519", "--out", str(path)])
    assert result.exit_code == 0, result.output
    key = read_key_file(path)
    assert key.scheme is SigScheme.ED25519
    assert key.account.hex() in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keys_new_defaults_to_ml_dsa_65(tmp_path: Path) -> None:
    path = tmp_path / "me.key"
    result = runner.invoke(app, ["keys", "new", "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert read_key_file(path).scheme is SigScheme.ML_DSA_65


def test_keys_new_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "me.key"
    assert runner.invoke(app, ["keys", "new", "-o", str(path)]).exit_code == 0
    before = path.read_bytes()
    result = runner.invoke(app, ["keys", "new", "-o", str(path)])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert path.read_bytes() == before


def test_keys_new_rejects_unknown_scheme(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "new", "--scheme", "rsa", "-o", str(tmp_path / "k")])
    assert result.exit_code == 2
    assert "--scheme must be one of" in result.output
    assert not (tmp_path / "k").exists()


def test_keys_show(tmp_path: Path) -> None:
    path = tmp_path / "me.key"
    runner.invoke(app, ["keys", "new", "--scheme", "ed25519", "-o", str(path)])
    result = runner.invoke(app, ["keys", "show", str(path)])
    assert result.exit_code == 0
    assert read_key_file(path).account.hex() in result.output
    assert "private" not in result.output.lower()


def test_a_signal_stops_the_supervision_loop_and_the_old_handlers_come_back() -> None:
    import os
    import signal

    from authchain.cli.common import stop_on_signals, supervise

    before = signal.getsignal(signal.SIGTERM)
    ticks: list[int] = []

    def tick() -> str | None:
        ticks.append(1)
        if len(ticks) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` would, mid-run
        return None

    with stop_on_signals() as stopped:
        assert supervise(stopped, tick, every=0.01) == "stopped"
    assert len(ticks) == 3 and signal.getsignal(signal.SIGTERM) is before
    with stop_on_signals() as stopped:  # a tick that finds a reason to stop says so
        assert supervise(stopped, lambda: "node exited", every=0.01) == "node exited"


def test_failing_on_exits_with_the_error_and_no_traceback() -> None:
    import typer

    from authchain.cli.common import failing_on

    with pytest.raises(typer.Exit) as exit_, failing_on(ValueError, what="--x: ", code=2):
        raise ValueError("not a number")
    assert exit_.value.exit_code == 2
    with pytest.raises(KeyError), failing_on(ValueError):  # other errors are not swallowed
        raise KeyError("k")
