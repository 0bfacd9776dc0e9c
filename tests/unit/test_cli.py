"""The `authchain` command: help and `keys`."""

from __future__ import annotations

import stat
from pathlib import Path

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
