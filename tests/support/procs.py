"""Real authchain processes for integration and end-to-end tests.

`ChainFixture` writes a node config for a fresh chain in a temp dir (its own validator and
account keys, free loopback ports). `Proc` (the devnet's `Process`) runs `python -m authchain
...` with its output in a log file, waits for it to answer, and stops it with a signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from authchain.chain import crypto
from authchain.chain.types import SigScheme
from authchain.devnet import Process, free_port

REPO = Path(__file__).resolve().parents[2]


Proc = Process
"""Real `authchain` processes in tests are the devnet's `Process`."""


@dataclass
class ChainFixture:
    """A fresh single-validator chain's config, keys and ports under `root`."""

    root: Path
    chain_id: str = "authchain-itest-devnet"
    block_time_secs: float = 0.3
    impersonation: bool = False
    ml_url: str | None = None
    validator: crypto.KeyPair = field(
        default_factory=lambda: crypto.KeyPair.generate(SigScheme.ED25519)
    )
    account: crypto.KeyPair = field(default_factory=lambda: crypto.KeyPair.generate())
    rpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def write_config(self) -> Path:
        key_path = self.root / "validator.key"
        if not key_path.exists():
            crypto.write_key_file(key_path, self.validator)
        ml_url = self.ml_url or f"http://127.0.0.1:{free_port()}"  # nothing listens there
        path = self.root / "node.toml"
        path.write_text(
            f'''chain_id = "{self.chain_id}"
[consensus]
block_time_secs = {self.block_time_secs}
max_artefacts_per_block = 4
[storage]
path = "{self.root / "chain-db"}"
[ml_client]
base_url = "{ml_url}"
timeout_secs = {self.extra.get("ml_timeout_secs", 30)}
[metrics]
listen_addr = "127.0.0.1:{self.metrics_port}"
[rpc]
listen_addr = "127.0.0.1:{self.rpc_port}"
[node]
key_file = "{key_path}"
[genesis]
timestamp_ms = 0
impersonation = {str(self.impersonation).lower()}
[[genesis.validators]]
scheme = "{self.validator.scheme.value}"
public_key = "{self.validator.public_key.hex()}"
[[genesis.accounts]]
account = "{self.account.account}"
balance = 1000000
'''
        )
        return path

    def node(self) -> Proc:
        """A node process for this chain (not started)."""
        return Proc(
            ["node", "--config", str(self.write_config()), "--log-level", "debug"],
            self.root / "node.log",
            cwd=REPO,
        )

    def start_node(self) -> Proc:
        proc = self.node().start()
        proc.wait_http(f"{self.rpc_url}/health")
        return proc


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Prometheus samples by (name, sorted labels)."""


def scrape(metrics_url: str) -> Samples:
    """Every sample a /metrics endpoint exports now."""
    text = httpx.get(metrics_url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
