"""The node runtime (seed `main.rs`): wiring, the block loop, the RPC and metrics servers.

`Node.open(config)` builds everything a running node needs: the RocksDB store, the validator
key, the `HttpMlVerifier`, the metrics registry and the `ConsensusEngine`. `Node.run(stop)`
serves the RPC (default 127.0.0.1:26657) and `/metrics` (127.0.0.1:9898) and proposes a block
every `block_time_secs` until `stop` is set. This is the only chain module that reads the clock;
the engine gets the time as an argument.

Durability: every accepted tx and every block commit is one synced RocksDB write batch before
it is acknowledged, so a node killed with SIGKILL restarts from its stored tip and pool with
nothing lost. SIGINT/SIGTERM stop the loop after the current step and close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from dataclasses import dataclass

from prometheus_client import make_asgi_app
from prometheus_client.core import CollectorRegistry
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from authchain.chain import crypto
from authchain.chain.config import ChainConfig
from authchain.chain.consensus.engine import ConsensusEngine, ImportStatus
from authchain.chain.consensus.store import BlockStore
from authchain.chain.errors import ConfigError, SignatureError
from authchain.chain.metrics.prometheus import ChainMetrics
from authchain.chain.ml_client import HttpMlVerifier
from authchain.chain.rpc import RpcContext, create_rpc_app
from authchain.chain.state import Genesis, genesis_from_config
from authchain.chain.storage import RocksDbBlockStore
from authchain.chain.validation.ml import MlValidity, MlVerifier
from authchain.web import Server, bind, make_server

log = logging.getLogger(__name__)

IMPERSONATION_WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! genesis.impersonation is ON: this chain accepts UNSIGNED transactions for ANY account.  !!
!! That is for a local devnet only (like Anvil's auto-impersonation). Never run a chain     !!
!! holding anything of value this way: set [genesis] impersonation = false.               !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def now_ms() -> int:
    """Wall-clock time in milliseconds (block timestamps)."""
    return time.time_ns() // 1_000_000


def load_validator_key(config: ChainConfig) -> crypto.KeyPair | None:
    """The key in `node.key_file`, checked against the genesis validator set."""
    path = config.node.key_file
    if path is None:
        return None
    try:
        key = crypto.read_key_file(path)
    except SignatureError as exc:
        raise ConfigError(f"node.key_file: {exc}") from exc
    if key.account not in {v.account for v in config.genesis.validators}:
        raise ConfigError(
            f"node.key_file: {path} holds account {key.account}, which is not in "
            "genesis.validators; this node could never propose"
        )
    return key


@dataclass
class Parts:
    """What both drivers open from a config: store, genesis, metrics, verifier, V_auth."""

    store: RocksDbBlockStore
    genesis: Genesis
    metrics: ChainMetrics
    verifier: MlVerifier
    ml: MlValidity


def open_parts(config: ChainConfig, *, verifier: MlVerifier | None = None) -> Parts:
    """Open the store under `storage.path` and wire V_auth to the ML service."""
    genesis = genesis_from_config(config)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = ChainMetrics(registry)
    verifier = verifier or HttpMlVerifier.from_config(config.ml_client, genesis.floors)
    ml = MlValidity(
        verifier,
        max_concurrency=config.ml_client.max_concurrency,
        metrics=metrics,
    )
    store = RocksDbBlockStore(
        config.storage.path, create_if_missing=config.storage.create_if_missing
    )
    return Parts(store, genesis, metrics, verifier, ml)


@dataclass
class Node:
    """One running authchain node."""

    config: ChainConfig
    engine: ConsensusEngine
    store: BlockStore
    metrics: ChainMetrics
    key: crypto.KeyPair | None
    verifier: MlVerifier

    @classmethod
    def open(cls, config: ChainConfig, *, verifier: MlVerifier | None = None) -> Node:
        """Open the store under `storage.path` and wire the engine; ConfigError if unusable."""
        key = load_validator_key(config)
        p = open_parts(config, verifier=verifier)
        try:
            engine = ConsensusEngine(p.store, p.genesis, config.consensus, p.ml, metrics=p.metrics)
        except Exception:
            p.store.close()
            raise
        return cls(config, engine, p.store, p.metrics, key, p.verifier)

    def describe(self) -> str:
        """One line for the start-up log."""
        e = self.engine
        genesis = e.genesis_hash
        role = f"validator {self.key.account.short()}" if self.key else "follower (no key_file)"
        return (
            f"chain {e.genesis.chain_id} genesis {genesis.short()} tip {e.height} "
            f"{e.tip.short()}, {len(e.pool)} pooled txs, {role}"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve RPC and metrics and make blocks until `stop` is set."""
        rpc_sock = bind(self.config.rpc.listen_addr)
        servers: list[tuple[Server, socket.socket]] = []
        rpc_app = create_rpc_app(
            RpcContext(self.engine, self.config, self.key.account if self.key else None)
        )
        servers.append((make_server(rpc_app), rpc_sock))
        log.info("RPC listening on http://%s", self.config.rpc.listen_addr)
        if self.config.metrics.enabled:
            metrics_sock = bind(self.config.metrics.listen_addr)
            metrics_app = make_asgi_app(registry=self.metrics.registry)
            servers.append((make_server(metrics_app), metrics_sock))
            log.info(
                "metrics exporter listening on http://%s/metrics", self.config.metrics.listen_addr
            )
        tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in servers]
        try:
            await self._block_loop(stop, tasks)
        finally:
            for server, _ in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _block_loop(self, stop: asyncio.Event, servers: list[asyncio.Task[None]]) -> None:
        interval = self.config.consensus.block_time_secs
        if self.key is None:
            log.warning("no node.key_file: this node serves its chain but proposes no blocks")
        else:
            log.info("block producer running with interval %gs", interval)
        next_slot = time.monotonic() + interval
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_slot - time.monotonic()))
            for task in servers:
                if task.done():  # a server died (port taken after bind?): stop the node
                    task.result()
                    raise RuntimeError("a server stopped unexpectedly")
            if stop.is_set():
                break
            next_slot = max(next_slot + interval, time.monotonic())
            if self.key is not None:
                await self._propose(self.key)

    async def _propose(self, key: crypto.KeyPair) -> None:
        # propose_block itself returns None when it is not this validator's turn
        height = self.engine.height + 1
        result = await self.engine.propose_block(key, now_ms())
        if result is not None and result.status is not ImportStatus.ACCEPTED:
            log.warning(
                "own block %s at height %d not accepted: %s %s",
                result.block_hash.short(), height, result.status, result.reason or "",
            )  # fmt: skip

    def close(self) -> None:
        """Stop the signature workers and release the store (flushes RocksDB)."""
        self.engine.app.close()
        self.store.close()


async def run_node(config: ChainConfig) -> None:
    """Open a node, run it until SIGINT/SIGTERM, close it."""
    node = Node.open(config)
    if config.genesis.impersonation:
        log.warning(IMPERSONATION_WARNING)
    log.info("%s", node.describe())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    try:
        await node.run(stop)
    finally:
        if isinstance(node.verifier, HttpMlVerifier):
            await node.verifier.aclose()
        node.close()
        log.info("node stopped at height %d; store closed", node.engine.height)


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("%s received: shutting down", sig.name)
    stop.set()
