"""A local devnet: the ML service, one node and the gateway as real processes.

`Devnet(root).start()` runs `python -m authchain ml-service | node | gateway` with
`configs/devnet.toml`, `configs/ml-service.toml` and `configs/api.toml`, overriding only the
data paths, the ports (seed ports by default) and the block time through their documented
environment variables. Each process logs to `<root>/logs/<name>.log`. `stop()` sends SIGTERM
and waits; every process shuts down cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx


@dataclass(frozen=True)
class DevnetPorts:
    """Loopback ports of one devnet (the seed's by default)."""

    ml: int = 8080
    gateway: int = 8081
    gateway_metrics: int = 9899
    node_metrics: int = 9898
    node_rpc: int = 26657


class DevnetError(Exception):
    """A devnet process failed to start or died."""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


@dataclass
class Devnet:
    """The three processes of a local devnet, rooted in one data directory."""

    root: Path
    ports: DevnetPorts = field(default_factory=DevnetPorts)
    block_time_secs: float = 2.0
    ml_timeout_secs: float = 30.0
    repo: Path = field(default_factory=Path.cwd)
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def ml_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ml}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.node_rpc}"

    @property
    def node_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.node_metrics}/metrics"

    def env(self) -> dict[str, str]:
        p = self.ports
        return {
            "ML_SERVICE_LISTEN_ADDR": f"127.0.0.1:{p.ml}",
            "ML_SERVICE_MODEL_ROOT": str(self.root / "models"),
            "ML_SERVICE_EVIDENCE_ROOT": str(self.root / "evidence"),
            "AUTHCHAIN_STORAGE__PATH": str(self.root / "chain-db"),
            "AUTHCHAIN_CONSENSUS__BLOCK_TIME_SECS": str(self.block_time_secs),
            "AUTHCHAIN_RPC__LISTEN_ADDR": f"127.0.0.1:{p.node_rpc}",
            "AUTHCHAIN_METRICS__LISTEN_ADDR": f"127.0.0.1:{p.node_metrics}",
            "AUTHCHAIN_ML_CLIENT__BASE_URL": self.ml_url,
            "AUTHCHAIN_ML_CLIENT__TIMEOUT_SECS": str(self.ml_timeout_secs),
            "AUTHCHAIN_API_LISTEN_ADDR": f"127.0.0.1:{p.gateway}",
            "AUTHCHAIN_API_METRICS_LISTEN_ADDR": f"127.0.0.1:{p.gateway_metrics}",
            "AUTHCHAIN_API_NODE_URLS": json.dumps([self.rpc_url]),
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start ML service, node and gateway, each once the previous one answers."""
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.start_process("ml-service", ["ml-service"], f"{self.ml_url}/health", timeout)
        self.start_process(
            "node", ["node", "--config", "configs/devnet.toml"], f"{self.rpc_url}/health", timeout
        )
        self.start_process(
            "gateway", ["gateway", "--config", "configs/api.toml"],
            f"{self.gateway_url}/health", timeout,
        )  # fmt: skip

    def start_process(self, name: str, args: list[str], health_url: str, timeout: float) -> None:
        """Start one `authchain` subcommand and wait until `health_url` answers."""
        log_path = self.root / "logs" / f"{name}.log"
        log_file = log_path.open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", "authchain", *args],
            cwd=self.repo,
            env={**os.environ, **self.env()},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = Process(name, popen, log_path, log_file)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise DevnetError(f"{name} exited with {popen.returncode}:\n{self.tail(name)}")
            try:
                if httpx.get(health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise DevnetError(f"{name} did not answer {health_url} in {timeout}s:\n{self.tail(name)}")

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop one process with `sig`; its exit code."""
        proc = self.processes.pop(name)
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)
        try:
            code = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            code = proc.popen.wait()
        proc.log_file.close()
        return code

    def stop(self) -> dict[str, int]:
        """Stop every process (gateway first, ML service last); their exit codes."""
        return {name: self.stop_process(name) for name in reversed(list(self.processes))}

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.root / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Devnet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
