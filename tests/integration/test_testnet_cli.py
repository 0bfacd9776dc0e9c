"""`authchain testnet` as a user runs it: it starts the validators and the gateway, shows a live
status line, and SIGTERM stops everything it started (real cometbft, app and ML service)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from authchain.devnet import Process, free_port
from tests.support.procs import REPO


def test_testnet_command_runs_and_sigterm_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    proc = Process(
        ["testnet", "--validators", "1", "--dir", str(tmp_path / "net"),
         "--first-ip", "127.0.0.31", "--gateway-port", str(port)],
        tmp_path / "testnet.log", cwd=REPO,
    ).start()  # fmt: skip
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
        proc.wait_for_log("validators up 1/1", timeout=60)
        status = httpx.get(f"http://127.0.0.1:{port}/status", timeout=10).json()
        assert status["chain_id"] == "authchain-testnet" and status["height"] >= 1
    finally:
        code = proc.stop(signal.SIGTERM, timeout=60)
    assert code == 0, proc.tail()
    assert "stopped: gateway=0, comet0=0, app0=0, ml0=0" in proc.log()
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "net")], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"processes left behind: {left.stdout}"
    # the directory is kept: the chain's state survives for the next run
    assert (tmp_path / "net" / "node0" / "chain-db").is_dir()
