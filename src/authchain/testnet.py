"""A local multi-validator testnet on CometBFT: `authchain testnet --validators N --dir DIR`.

Validator i gets the loopback address 127.0.0.(i+1) (`first_ip` moves the range) with
CometBFT's default ports, and processes of its own:

    ML service     127.0.0.(i+1):8080   its own model and evidence store; fetches missing
                                        files from the other validators' services by hash,
                                        signing evidence requests with its validator key
    authchain abci 127.0.0.(i+1):26658  the application, its own RocksDB, metrics on :9898
                                        (with mempool "app", its tx intake on :26659)
    cometbft       127.0.0.(i+1):26656 (p2p), :26657 (RPC), :26660 (Prometheus)

and one gateway at 127.0.0.1:8081 (metrics :9899) reads and writes through CometBFT's RPC.

`init()` writes everything once: `cometbft testnet` makes the CometBFT homes (keys, genesis,
peers); their config.toml gets each validator's addresses and the consensus timeouts; every
validator's authchain config (`DIR/nodeI/authchain.toml`) is `configs/devnet.toml` with the
chain id, the CometBFT validators' Ed25519 keys as genesis.validators and local paths; every
validator's ML service config (`DIR/nodeI/ml-service.toml`) names its peers, the same
validator keys as the only readers of its evidence, and its own CometBFT key file to sign its
fetches with. A second run on the same DIR reuses it, so a stopped testnet starts again where
it stopped.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from authchain.chain.abci.gen import COMETBFT_VERSION
from authchain.devnet import DevnetError, Process

COMETBFT_ENV = "AUTHCHAIN_COMETBFT"
DEFAULT_CHAIN_ID = "authchain-testnet"
MEMPOOL_TXS = 5_000
"""CometBFT's mempool size (its default): every tx in it can execute and pays its fee
(`next_nonce_only`), and the app's pool, a mirror of it, holds at least twice as many
(`consensus.max_pool_txs`), so the app never refuses what CometBFT still has room for."""
TXS_PORT = 26659
"""Each app's tx intake, where it holds the pending txs (`Testnet.mempool = "app"`)."""
MIN_FEE = 10
"""genesis.min_fee of a testnet: every tx pays at least this to the block's proposer, so a
stranger who fills the mempool pays for every slot (each admitted tx executes: see above).
The devnet stays free."""
FUNDED_BALANCE = 10**9
"""What `authchain testnet --fund ACCOUNT` gives an account in genesis (the devnet account's
balance)."""
MEMPOOL_BYTES = 64 * 1024 * 1024
"""5,000 of the largest txs (ML-DSA-65-signed, about 5.4 KB) with room to spare; CometBFT's
default, 1 GiB, would let a full mempool hold 200,000 tiny ones' worth of memory."""


def comet_rpc(url: str, method: str, **params: Any) -> Any:
    """One JSON-RPC call to the CometBFT RPC at `url`: its result (DevnetError on an error)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    answer = httpx.post(url, json=body, timeout=10).json()
    if "error" in answer:
        raise DevnetError(f"{method} on {url}: {answer['error']}")
    return answer["result"]


def find_cometbft(repo: Path) -> Path:
    """The cometbft binary: $AUTHCHAIN_COMETBFT, the repo's bin/, or PATH."""
    for candidate in (
        os.environ.get(COMETBFT_ENV),
        repo / "bin" / "cometbft",
        shutil.which("cometbft"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise DevnetError(
        f"no cometbft binary: run `make cometbft` (go install github.com/cometbft/cometbft/"
        f"cmd/cometbft@{COMETBFT_VERSION} into bin/) or set {COMETBFT_ENV}"
    )


@dataclass
class Validator:
    """One validator's addresses and directories."""

    index: int
    host: str
    root: Path
    """DIR/node<i>: authchain config, RocksDB, files, logs."""
    home: Path
    """DIR/cometbft/node<i>: the CometBFT home."""
    compose: bool = False
    """Named as a service of deploy/docker-compose.testnet.yml, not by its loopback host."""

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:26657"

    @property
    def ml_url(self) -> str:
        return f"http://{self.host}:8080"

    @property
    def txs_url(self) -> str:
        """The app's tx intake, where it holds the pending txs (`Testnet.mempool = "app"`)."""
        host = f"app{self.index}" if self.compose else self.host
        return f"http://{host}:{TXS_PORT}"

    @property
    def config_path(self) -> Path:
        return self.root / "authchain.toml"

    @property
    def ml_config_path(self) -> Path:
        return self.root / "ml-service.toml"


@dataclass
class Testnet:
    """N validators on CometBFT, and a gateway, as real processes."""

    __test__ = False  # not a pytest test class, whatever its name

    root: Path
    validators: int = 4
    first_ip: str = "127.0.0.1"
    chain_id: str = DEFAULT_CHAIN_ID
    gateway_port: int = 8081
    gateway_metrics_port: int = 9899
    timeout_propose: str = "10s"
    timeout_commit: str = "1s"
    unavailable_wait_secs: float = 10.0
    repo: Path = field(default_factory=Path.cwd)
    cometbft: Path | None = None
    compose: bool = False
    """Write configs for deploy/docker-compose.testnet.yml: validator i's containers are
    cometbft<i>, app<i> and ml<i>, each listening on all its interfaces."""
    app_env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every validator's app (e.g. `AUTHCHAIN_CONSENSUS__...`
    overrides, the same on all of them)."""
    builtin_app: str | None = None
    """Run CometBFT's example key-value store instead of authchain's app, with the same
    CometBFT settings and no app, ML service or gateway processes (the throughput anchors of
    `benchmarks/cometbft.py`): "kvstore" inside each CometBFT process, or "socket-kvstore" as
    a process of its own that CometBFT reaches over the ABCI socket, as it reaches authchain
    (`abci-cli kvstore`, built by `make abci-cli`)."""
    abci_transport: str = "socket"
    """How CometBFT reaches each app: "socket" or "grpc" (abci.transport; written once, by
    `init`)."""
    mempool: str = "app"
    """Who holds the pending txs: "app" (CometBFT's mempool off, each app's own pool fed by
    its intake on :26659 and relayed to the others; the gateway submits there), or "cometbft"
    (its mempool, every tx checked by every validator's CheckTx). abci.mempool; written once,
    by `init`. A `builtin_app` has no intake: it needs "cometbft"."""
    min_fee: int = MIN_FEE
    """genesis.min_fee (written once, by `init`)."""
    funded: dict[str, int] = field(default_factory=dict)
    """Account (hex) -> balance, added to genesis.accounts besides the devnet account (a
    faucet for tests and benchmarks; written once, by `init`)."""
    nodes: list[Validator] = field(default_factory=list)
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.abci_transport not in ("socket", "grpc"):
            raise ValueError(f"abci_transport {self.abci_transport!r}: 'socket' or 'grpc'")
        if self.mempool not in ("cometbft", "app"):
            raise ValueError(f"mempool {self.mempool!r}: 'cometbft' or 'app'")
        if self.builtin_app and self.mempool != "cometbft":
            raise ValueError(f"builtin_app {self.builtin_app!r} takes txs through CometBFT's "
                             "mempool only: mempool 'cometbft'")  # fmt: skip
        if self.builtin_app and self.abci_transport != "socket":
            raise ValueError(f"builtin_app {self.builtin_app!r} runs over the ABCI socket only")
        head, _, last = self.first_ip.rpartition(".")
        if not head.startswith("127.") or int(last) + self.validators > 255:
            raise ValueError(f"first_ip {self.first_ip}: need {self.validators} loopback hosts")
        self.root = self.root.resolve()
        self.nodes = [
            Validator(i, f"{head}.{int(last) + i}", self.root / f"node{i}",
                      self.root / "cometbft" / f"node{i}", compose=self.compose)
            for i in range(self.validators)
        ]  # fmt: skip

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    # --- init -----------------------------------------------------------------------------

    def init(self) -> None:
        """Write the CometBFT homes and authchain configs, unless DIR already has them (then
        `mempool` is what DIR was written with; a DIR from before ML service configs existed
        gets those, from its own keys)."""
        if not all(n.config_path.exists() for n in self.nodes):
            self._init_homes()
        else:  # who holds the pending txs was written with DIR: the gateway must agree
            written = tomllib.loads(self.nodes[0].config_path.read_text()).get("abci", {})
            self.mempool = written.get("mempool", "cometbft")
        keys = [self._public_key(n) for n in self.nodes]
        for node in self.nodes:
            if not node.ml_config_path.exists():
                node.ml_config_path.write_text(tomli_w.dumps(self._ml_config(node, keys)))

    def _init_homes(self) -> None:
        cometbft = self.cometbft or find_cometbft(self.repo)
        shutil.rmtree(self.root / "cometbft", ignore_errors=True)
        peers = (
            ["--hostname-prefix", "cometbft"]
            if self.compose
            else ["--starting-ip-address", self.nodes[0].host]
        )
        subprocess.run(
            [str(cometbft), "testnet", "--v", str(self.validators),
             "--o", str(self.root / "cometbft"), *peers],
            check=True, capture_output=True,
        )  # fmt: skip
        keys = [self._public_key(n) for n in self.nodes]
        for node in self.nodes:
            genesis_path = node.home / "config" / "genesis.json"
            genesis = json.loads(genesis_path.read_text())
            genesis["chain_id"] = self.chain_id
            genesis_path.write_text(json.dumps(genesis, indent=2))
            self._write_comet_config(node)
            node.root.mkdir(parents=True, exist_ok=True)
            (node.root / "logs").mkdir(exist_ok=True)
            node.config_path.write_text(tomli_w.dumps(self._authchain_config(node, keys)))
            node.ml_config_path.unlink(missing_ok=True)

    def _public_key(self, node: Validator) -> bytes:
        key = json.loads((node.home / "config" / "priv_validator_key.json").read_text())
        return base64.b64decode(key["pub_key"]["value"])

    def _write_comet_config(self, node: Validator) -> None:
        path = node.home / "config" / "config.toml"
        config = tomllib.loads(path.read_text())
        h = "0.0.0.0" if self.compose else node.host
        app = f"{f'app{node.index}' if self.compose else h}:26658"
        if self.builtin_app == "kvstore":
            config["proxy_app"] = "kvstore"
        elif self.abci_transport == "grpc":  # grpc-go resolves HOST:PORT, not tcp://HOST:PORT
            config["proxy_app"], config["abci"] = app, "grpc"
        else:
            config["proxy_app"] = f"tcp://{app}"
        config["moniker"] = f"validator{node.index}"
        config["log_level"] = "consensus:info,state:info,*:error"
        config["rpc"]["laddr"] = f"tcp://{h}:26657"
        config["p2p"]["laddr"] = f"tcp://{h}:26656"
        config["p2p"]["addr_book_strict"] = False
        config["p2p"]["allow_duplicate_ip"] = True
        config["consensus"]["timeout_propose"] = self.timeout_propose
        config["consensus"]["timeout_commit"] = self.timeout_commit
        config["consensus"]["create_empty_blocks"] = True
        config["instrumentation"]["prometheus"] = True
        config["instrumentation"]["prometheus_listen_addr"] = f"{h}:26660"
        config["tx_index"]["indexer"] = "kv"
        config["mempool"]["size"] = MEMPOOL_TXS
        config["mempool"]["max_txs_bytes"] = MEMPOOL_BYTES
        config["mempool"]["recheck"] = True  # a commit may make a pooled tx invalid: drop it
        if self.mempool == "app":  # the apps hold, relay and propose the txs
            config["mempool"]["type"] = "nop"
        path.write_text(tomli_w.dumps(config))

    def _authchain_config(self, node: Validator, keys: list[bytes]) -> dict[str, Any]:
        config = tomllib.loads((self.repo / "configs" / "devnet.toml").read_text())
        config["chain_id"] = self.chain_id
        h = "0.0.0.0" if self.compose else node.host
        config["storage"]["path"] = (
            "/data/chain-db" if self.compose else str(node.root / "chain-db")
        )
        config["ml_client"]["base_url"] = (
            f"http://ml{node.index}:8080" if self.compose else node.ml_url
        )
        config["metrics"]["listen_addr"] = f"{h}:9898"
        config.pop("node", None)  # CometBFT holds the validator key
        config.pop("rpc", None)  # CometBFT serves the RPC
        config["abci"] = {
            "listen_addr": f"tcp://{h}:26658",
            "transport": self.abci_transport,
            "unavailable_wait_secs": self.unavailable_wait_secs,
            "mempool_size": MEMPOOL_TXS,  # what CometBFT's config says (`_comet_config`)
            "mempool_max_txs_bytes": MEMPOOL_BYTES,
            "mempool": self.mempool,
        }
        if self.mempool == "app":
            config["abci"]["txs_listen_addr"] = f"{h}:{TXS_PORT}"
            config["abci"]["mempool_peers"] = [n.txs_url for n in self.nodes if n is not node]
        config["genesis"]["validators"] = [
            {"scheme": "ed25519", "public_key": key.hex()} for key in keys
        ]
        config["genesis"]["min_fee"] = self.min_fee
        listed = {a["account"] for a in config["genesis"]["accounts"]}
        config["genesis"]["accounts"] += [
            {"account": account, "balance": balance}
            for account, balance in self.funded.items()
            if account not in listed
        ]
        pool = config["consensus"]
        pool["max_pool_txs"] = max(pool.get("max_pool_txs", 0), 2 * MEMPOOL_TXS)
        return config

    def _ml_config(self, node: Validator, keys: list[bytes]) -> dict[str, Any]:
        """Validator `node`'s ML service: its store, its peers, and who may read evidence."""
        others = [n for n in self.nodes if n is not node]
        if self.compose:
            home = f"/testnet/cometbft/node{node.index}"
            config: dict[str, Any] = {
                "listen_addr": "0.0.0.0:8080",
                "model_root": "/data/models",
                "evidence_root": "/data/evidence",
                "peers": [f"http://ml{n.index}:8080" for n in others],
            }
        else:
            home = str(node.home)
            config = {
                "listen_addr": f"{node.host}:8080",
                "model_root": str(node.root / "models"),
                "evidence_root": str(node.root / "evidence"),
                "peers": [n.ml_url for n in others],
                "torch_threads": 1,
            }
        config["peer_auth"] = {
            "chain_id": self.chain_id,
            "key_file": f"{home}/config/priv_validator_key.json",
            "validators": [{"scheme": "ed25519", "public_key": key.hex()} for key in keys],
        }
        return config

    # --- processes ------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Start every validator's ML service, app and CometBFT node, then the gateway, and
        wait for the first block."""
        self.init()
        if self.builtin_app:
            for node in self.nodes:
                if self.builtin_app == "socket-kvstore":
                    self._start_socket_kvstore(node, timeout)
                self._start_comet(node, timeout)
            self.wait_height(1, timeout)
            return
        for node in self.nodes:
            self._start_ml(node)
        for node in self.nodes:
            self.processes[f"ml{node.index}"].wait_http(f"{node.ml_url}/health", timeout)
        for node in self.nodes:
            self.start_validator(node.index, timeout=timeout)
        gateway = Process(
            ["gateway"], self.root / "gateway.log", cwd=self.repo,
            env={
                "AUTHCHAIN_API_LISTEN_ADDR": f"127.0.0.1:{self.gateway_port}",
                "AUTHCHAIN_API_METRICS_LISTEN_ADDR": f"127.0.0.1:{self.gateway_metrics_port}",
                "AUTHCHAIN_API_COMET_RPC_URLS": json.dumps([n.rpc_url for n in self.nodes]),
                "AUTHCHAIN_API_COMET_TXS_URLS": json.dumps(
                    [n.txs_url for n in self.nodes] if self.mempool == "app" else []
                ),
            },
        ).start()  # fmt: skip
        self.processes["gateway"] = gateway
        gateway.wait_http(f"{self.gateway_url}/health", timeout)
        self.wait_height(1, timeout)

    def _start_ml(self, node: Validator) -> None:
        log = node.root / "logs" / "ml-service.log"
        self.processes[f"ml{node.index}"] = Process(
            ["ml-service", "--config", str(node.ml_config_path)], log, cwd=self.repo
        ).start()

    def start_validator(
        self, index: int, *, include_unverified_claims: bool = False, timeout: float = 60.0
    ) -> None:
        """Start validator `index`'s app and CometBFT node (its ML service runs apart)."""
        node = self.nodes[index]
        env = {
            **self.app_env,
            "AUTHCHAIN_ABCI__INCLUDE_UNVERIFIED_CLAIMS": str(include_unverified_claims).lower(),
        }
        app = Process(
            ["abci", "--config", str(node.config_path)], node.root / "logs" / "abci.log",
            env=env, cwd=self.repo,
        ).start()  # fmt: skip
        self.processes[f"app{index}"] = app
        app.wait_tcp(node.host, 26658, timeout)
        self._start_comet(node, timeout)

    def _start_socket_kvstore(self, node: Validator, timeout: float) -> None:
        abci_cli = self.repo / "bin" / "abci-cli"
        if not abci_cli.is_file():
            raise DevnetError(
                f"no {abci_cli}: run `make abci-cli` (go install github.com/cometbft/cometbft/"
                f"abci/cmd/abci-cli@{COMETBFT_VERSION} into bin/)"
            )
        app = Process(
            ["kvstore", "--address", f"tcp://{node.host}:26658", "--log_level", "error"],
            node.root / "logs" / "kvstore.log", cwd=self.repo, program=[str(abci_cli)],
        ).start()  # fmt: skip
        self.processes[f"app{node.index}"] = app
        app.wait_tcp(node.host, 26658, timeout)

    def _start_comet(self, node: Validator, timeout: float) -> None:
        cometbft = self.cometbft or find_cometbft(self.repo)
        comet = Process(
            ["start", "--home", str(node.home)], node.root / "logs" / "cometbft.log",
            cwd=self.repo, program=[str(cometbft)],
        ).start()  # fmt: skip
        self.processes[f"comet{node.index}"] = comet
        comet.wait_http(f"{node.rpc_url}/health", timeout)

    def stop_validator(self, index: int, sig: int = signal.SIGTERM) -> dict[str, int]:
        """Stop validator `index`'s CometBFT node and app (SIGKILL: a crash)."""
        return {
            name: self.processes.pop(name).stop(sig)
            for name in (f"comet{index}", f"app{index}")
            if name in self.processes
        }

    def stop_ml(self, index: int) -> int:
        return self.processes.pop(f"ml{index}").stop()

    def start_ml(self, index: int, timeout: float = 120.0) -> None:
        node = self.nodes[index]
        self._start_ml(node)
        self.processes[f"ml{index}"].wait_http(f"{node.ml_url}/health", timeout)

    def stop(self) -> dict[str, int]:
        """Stop the gateway, then every validator, then the ML services; exit codes."""
        codes = {}
        order = ["gateway"] + [f"comet{n.index}" for n in self.nodes]
        order += [f"app{n.index}" for n in self.nodes] + [f"ml{n.index}" for n in self.nodes]
        for name in order:
            if name in self.processes:
                codes[name] = self.processes.pop(name).stop()
        return codes

    # --- reading the network --------------------------------------------------------------

    def rpc(self, index: int, method: str, **params: Any) -> Any:
        """One CometBFT JSON-RPC call on validator `index`."""
        return comet_rpc(self.nodes[index].rpc_url, method, **params)

    def query(self, index: int, path: str) -> Any:
        """The application's JSON answer to ABCI Query `path` on validator `index` (its
        error body for a non-zero code; {} if it answered nothing)."""
        result = self.rpc(index, "abci_query", path=path, data="", height="0", prove=False)
        value = result["response"].get("value")
        return json.loads(base64.b64decode(value)) if value else {}

    def app_status(self, index: int) -> dict[str, Any]:
        """The application's own status (ABCI Query /status) on validator `index`."""
        status: dict[str, Any] = self.query(index, "/status")
        return status

    def height(self, index: int) -> int:
        return int(self.rpc(index, "status")["sync_info"]["latest_block_height"])

    def wait_height(
        self, height: int, timeout: float = 60.0, nodes: list[int] | None = None
    ) -> None:
        """Wait until every validator in `nodes` (default all running) reached `height`."""
        deadline = time.monotonic() + timeout
        indices = nodes if nodes is not None else self.running()
        while time.monotonic() < deadline:
            try:
                if all(self.height(i) >= height for i in indices):
                    return
            except (httpx.HTTPError, DevnetError):
                pass
            time.sleep(0.25)
        raise DevnetError(f"validators {indices} did not reach height {height} in {timeout}s")

    def running(self) -> list[int]:
        """Validators whose CometBFT node runs."""
        return [n.index for n in self.nodes if f"comet{n.index}" in self.processes]

    def status_line(self) -> str:
        """height · validators up · pending registrations, for the live display."""
        heights, pending, up = [], 0, 0
        for node in self.nodes:
            try:
                heights.append(self.height(node.index))
                pending = max(pending, int(self.app_status(node.index)["pending_registrations"]))
                up += 1
            except (httpx.HTTPError, DevnetError, KeyError, ValueError):
                continue
        height = max(heights) if heights else 0
        return (
            f"height {height} · validators up {up}/{len(self.nodes)} · "
            f"pending registrations {pending} · gateway {self.gateway_url}"
        )
