"""A local devnet: the ML service, one node and the gateway as real processes.

`Devnet(root).start()` runs `python -m authchain ml-service | node | gateway` with
`configs/devnet.toml`, `configs/ml-service.toml` and `configs/api.toml`, overriding only the
data paths, the ports (seed ports by default) and the block time through their documented
environment variables. Each process logs to `<root>/logs/<name>.log`. `stop()` sends SIGTERM
and waits; every process shuts down cleanly. Each process also gets SIGTERM from Linux when
the process that started it dies, however it dies (SIGKILL included), so nothing a devnet,
testnet or demo started outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class DevnetPorts:
    """Loopback ports of one devnet (the seed's by default)."""

    ml: int = 8080
    gateway: int = 8081
    gateway_metrics: int = 9899
    node_metrics: int = 9898
    node_rpc: int = 26657

    @classmethod
    def free(cls) -> DevnetPorts:
        """Ports nothing listens on right now (tests, experiments)."""
        return cls(*(free_port() for _ in range(5)))


class DevnetError(Exception):
    """A devnet process failed to start or died."""


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when its parent dies."""


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child sent `sig` when this process dies (Linux; None
    elsewhere). libc's prctl is looked up here, so the child only makes the call; if this
    process died before the call took effect, the child signals itself."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


@dataclass
class Process:
    """One `python -m authchain <args>` (or other program's) subprocess, its output in
    `log_path`."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path.cwd)
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "authchain"])
    """What `args` are given to: the authchain CLI unless told otherwise (cometbft)."""
    popen: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None

    def start(self) -> Process:
        """Start it. It is sent SIGTERM when the calling thread's process dies (Linux's
        parent-death signal; start processes from the main thread, which lives as long)."""
        self._log_file = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [*self.program, *self.args],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
        return self

    def wait_tcp(self, host: str, port: int, timeout: float = 60.0) -> None:
        """Wait until something accepts connections on host:port; DevnetError if it dies."""

        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
                return True
            return False

        self.wait_until(listening, timeout, f"listen on {host}:{port}")

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Wait until GET `url` answers 200; DevnetError (with the log) if it dies first."""

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_until(answers, timeout, f"answer {url}")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Wait until the process's log says `text`; DevnetError if it dies first."""
        self.wait_until(lambda: text in self.log(), timeout, f"say {text!r}")

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until it is true; DevnetError (with the log's tail) if the process
        exits first or `timeout` passes ("... did not `what` in ...s")."""
        assert self.popen is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise DevnetError(
                    f"{self.args[0]} exited with {self.popen.returncode}:\n{self.tail()}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise DevnetError(f"{self.args[0]} did not {what} in {timeout}s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` (SIGKILL after `timeout`) and return the exit code."""
        assert self.popen is not None, "start() first"
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        if self._log_file is not None:
            self._log_file.close()
        return code

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class Devnet:
    """The three processes of a local devnet, rooted in one data directory."""

    root: Path
    ports: DevnetPorts = field(default_factory=DevnetPorts)
    block_time_secs: float = 2.0
    ml_timeout_secs: float = 30.0
    extra_env: dict[str, str] = field(default_factory=dict)
    """More settings for every process (`AUTHCHAIN_CONSENSUS__...`, `ML_SERVICE_...`)."""
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
            **self.extra_env,
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
        proc = Process(args, log_path, env=self.env(), cwd=self.repo).start()
        self.processes[name] = proc
        proc.wait_http(health_url, timeout)

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop one process with `sig`; its exit code."""
        return self.processes.pop(name).stop(sig, timeout)

    def stop(self) -> dict[str, int]:
        """Stop every process (gateway first, ML service last); their exit codes."""
        return {name: self.stop_process(name) for name in reversed(list(self.processes))}

    def __enter__(self) -> Devnet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
