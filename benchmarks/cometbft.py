"""Throughput against CometBFT's own ceiling, commit latency and registrations/s (idle and under
a flood) of a CometBFT testnet, for 1 and 4 validators.

    .venv/bin/python benchmarks/cometbft.py                       # 1 and 4 validators
    .venv/bin/python benchmarks/cometbft.py --validators 4 --quick
    .venv/bin/python benchmarks/cometbft.py --transports          # ABCI socket against gRPC
    .venv/bin/python benchmarks/cometbft.py --mempools            # CometBFT's mempool against
                                                                  # the apps' own pools

Each network is a real `authchain testnet` (cometbft, app and ML service per validator, on
127.0.0.x) with timeout_commit 1 s and the testnet's mempool settings. Measured per network,
each against a floor or a peer from the same run:
- blocks/s over an idle window, as a ratio to 1/timeout_commit (what CometBFT allows);
- commit latency of signed transfers (submit -> committed, through the gateway), median and
  p90, as a ratio to timeout_commit;
- committed txs/s at saturation: B pre-signed ML-DSA-65 transfers (5,350 bytes) sent to every
  validator's RPC by the Go load generator (`tools/replay`, broadcast_tx_sync, 32 calls in
  flight and again, with fresh txs, 128), as a ratio to CometBFT's example kvstore on the
  same network shape and CometBFT settings, sent B txs of the same size the same way: built
  into CometBFT (the issue's anchor: no ABCI transport at all) and as its own process over
  the ABCI socket (`abci-cli kvstore`, how CometBFT reaches authchain); each as the burst's
  rate and as the steady rate of the blocks between its first and last; and the CPU each
  process group spent per committed tx (at 32 in flight);
- registrations/s: R honest registrations of one owner's model variants (one weight nudged:
  R aids, one evidence file) submitted at once, idle and again while strangers flood the
  network with 2,880 transfers, as a ratio to the rate one ML service verifies R other
  variants alone (`/verify` back to back, cold: the V_auth floor).
The app's block limits are raised (max_block_txs, max_block_size_bytes) so that CometBFT's
block size binds both applications alike. Writes CSV and a PNG to --out. Nothing is asserted:
this is a measurement, not a test.

`--mempools` measures only authchain with CometBFT's mempool (32 broadcast_tx_sync calls in
flight) and with the apps holding the pending txs (`mempool = "app"`: batches of 250 posted to
the apps' intakes, 4 calls in flight), against the in-process kvstore at its better load;
and then, on each network, the registrations/s of 4 model variants submitted while half as
many fresh transfers flood it the same way, against validator 0's ML service verifying 4
others back to back (cold: the V_auth floor); mempool.csv and mempool.png.

`--transports` measures only authchain over the ABCI socket against authchain over gRPC
(`abci.transport`): a fresh network of each, blocks of at most 4 MiB for both (what CometBFT's
gRPC client reads), 4,000 transfers at 32 calls in flight; transport.csv and transport.png.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import httpx
import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from authchain import loadgen
from authchain.chain import codec, crypto
from authchain.chain.config import GRPC_MAX_ANSWER_BYTES
from authchain.chain.types import AccountId, Aid, EvidenceHash, SigScheme, TxTransfer, WmProfile
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import free_port
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.owner import train_model
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.sketch import artefact_sketch
from authchain.testnet import DEFAULT_CHAIN_ID as CHAIN
from authchain.testnet import MIN_FEE, Testnet

REPO = Path(__file__).resolve().parents[1]
PROFILE = WmProfile(0.9, 0.2, -0.05, 0.05)
FUNDED = REPO / "configs" / "devnet-account.key"  # genesis funds it (configs/devnet.toml)
COMMIT_SECS = 1.0


def variants(root: Path, owner: crypto.KeyPair, count: int) -> tuple[list[Path], Path]:
    """`count` artefacts of one watermarked model, each with one weight nudged, and the
    evidence file they share."""
    result = train_model(
        bytes(owner.account), root / "model", tiny=True, epochs=None, seed=3, watermark=True,
        base=None, spec=EmbedSpec(),
    )  # fmt: skip
    loaded = load_artefact(result.artefact)
    paths = []
    for i in range(count):
        with torch.no_grad():
            loaded.model.state_dict()["fc.bias"][i % 10] += 1e-6
        path = root / f"variant{i}.safetensors"
        path.write_bytes(encode_artefact(loaded.model, loaded.arch, loaded.config))
        paths.append(path)
    return paths, result.evidence


KV_PAYLOAD = 5_350
"""kvstore's txs are `key=value` of the size of an ML-DSA-65-signed transfer."""


def kvstore_txs(count: int, first: int = 0) -> list[bytes]:
    """Distinct valid kvstore txs (one `=`, hex on either side) of `KV_PAYLOAD` bytes, keys
    `first`, `first + 1`, ..."""
    txs = []
    for i in range(first, first + count):
        head = f"k{i:09d}=".encode()
        txs.append(head + os.urandom(KV_PAYLOAD).hex().encode()[: KV_PAYLOAD - len(head)])
    return txs


def transfers(senders: list[crypto.KeyPair], per_sender: int, sink: AccountId) -> list[bytes]:
    """Pre-signed ML-DSA-65 transfers, each sender's in nonce order, senders interleaved."""
    return loadgen.round_robin(
        [
            [
                codec.encode(crypto.sign_tx(TxTransfer(s.account, sink, 1, MIN_FEE, n), s, CHAIN))
                for n in range(per_sender)
            ]
            for s in senders
        ]
    )


CONCURRENCY = (32, 128)
"""Calls in flight from the load generator: each app is measured at both (the first is the
headline; the second shows how much of the rate the generator's round trips bound)."""


def verify_floor(
    ml_url: str, owner: AccountId, aids: Sequence[Aid], evidence: EvidenceHash
) -> float:
    """The V_auth floor: variants/s one ML service verifies `aids` at, back to back, cold."""
    profile = {f: getattr(PROFILE, f) for f in PROFILE.__struct_fields__}
    started = time.monotonic()
    for aid in aids:
        body = {
            "aid": str(aid), "scheme_id": "multi_factor_v2", "owner": str(owner),
            "evidence_hash": str(evidence), "wm_profile": profile,
        }  # fmt: skip
        httpx.post(f"{ml_url}/verify", json=body, timeout=120).raise_for_status()
    return len(aids) / (time.monotonic() - started)


def senders_to(net: Testnet) -> list[str]:
    """Where txs go: the apps' intakes where they hold the pending txs, else CometBFT's RPC."""
    return [n.txs_url if net.mempool == "app" else n.rpc_url for n in net.nodes]


def pending(net: Testnet) -> int:
    """Txs waiting in the network: in the apps' pools, or in CometBFT's mempools."""
    if net.mempool == "app":
        return sum(net.app_status(i)["pool_size"] for i in range(len(net.nodes)))
    return sum(loadgen.mempool_size(node.rpc_url) for node in net.nodes)


def saturate(
    net: Testnet, txs: list[bytes], pids: dict[str, list[int]], concurrency: int, batch: int = 0
) -> dict[str, float]:
    """Send `txs` to every validator's RPC (`concurrency` broadcast_tx_sync calls in flight;
    where the apps hold the pending txs, to their intakes, `batch` txs per call) and wait
    until the mempools (or the apps' pools) are empty: committed txs/s from the last block
    before the first send to the last block with txs (`tx_per_s`, the burst's rate); the same
    over the blocks between the first and the last with txs (`steady_tx_per_s`, without the
    burst's ramp and tail; NaN for fewer than 3 such blocks); and the CPU seconds per
    committed tx of each process group."""
    urls = [node.rpc_url for node in net.nodes]
    # block 1's time is genesis_time, written before the network started, not a commit's:
    # the burst is timed from a block after it (on a fresh network, block 1 would add the
    # seconds between `init` and the first block to the burst)
    net.wait_height(2)
    first = net.height(0)
    cpu = {group: sum(loadgen.cpu_seconds(p) for p in ps) for group, ps in pids.items()}
    sent = loadgen.replay(senders_to(net), txs, repo=REPO, concurrency=concurrency, batch=batch)
    deadline = time.monotonic() + 300
    while pending(net) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2 * COMMIT_SECS)
    metas = loadgen.blocks(urls[0], first, net.height(0))
    busy = [m for m in metas[1:] if m.txs]  # metas[0] was made before the first send
    committed = sum(m.txs for m in metas[1:])
    span = busy[-1].time - metas[0].time if busy else float("nan")
    steady = float("nan")
    if len(busy) >= 3:  # block b's time is when b-1 was committed: b's txs came in between
        steady = sum(m.txs for m in busy[1:-1]) / (busy[-2].time - busy[0].time)
    row = {
        "sent": len(sent.results), "admitted": sent.accepted, "committed": committed,
        "tx_per_s": committed / span, "steady_tx_per_s": steady,
        "largest_block_gap_s": loadgen.largest_gap(metas),
    }  # fmt: skip
    for group, ps in pids.items():
        used = sum(loadgen.cpu_seconds(p) for p in ps) - cpu[group]
        row[f"{group}_cpu_ms_per_tx"] = 1e3 * used / max(committed, 1)
    return row


def pids_of(net: Testnet, prefix: str) -> list[int]:
    return [
        p.popen.pid
        for name, p in net.processes.items()
        if name.startswith(prefix) and p.popen is not None
    ]


def kvstore_rate(n: int, root: Path, count: int, app: str) -> dict[int, dict[str, float]]:
    """An anchor: CometBFT's example kvstore (`app`: "kvstore" inside CometBFT, or
    "socket-kvstore" over the ABCI socket) on the same network shape and settings, at each
    of `CONCURRENCY` (fresh keys each time)."""
    net = Testnet(
        root / f"{app}{n}", validators=n, first_ip=f"127.0.{50 + n}.1", repo=REPO,
        timeout_commit=f"{COMMIT_SECS:g}s", builtin_app=app, mempool="cometbft",
    )  # fmt: skip
    net.start()
    try:
        pids = {"cometbft": pids_of(net, "comet"), "app": pids_of(net, "app")}
        return {
            c: saturate(net, kvstore_txs(count, first=i * count), pids, c)
            for i, c in enumerate(CONCURRENCY)
        }
    finally:
        net.stop()


def authchain_net(
    root: Path,
    n: int,
    first_ip: str,
    senders: Sequence[crypto.KeyPair],
    *,
    block_txs: int,
    block_bytes: int,
    **options: str,
) -> Testnet:
    """`n` authchain validators for a throughput run, `senders` funded, the app's block limits
    raised to `block_txs` and `block_bytes` (so that CometBFT's block size, or that cap, binds
    alike for every variant); `options` are Testnet's (the transport, the mempool)."""
    return Testnet(
        root, validators=n, first_ip=first_ip, repo=REPO, gateway_port=free_port(),
        gateway_metrics_port=free_port(), timeout_commit=f"{COMMIT_SECS:g}s",
        funded={str(k.account): 10**9 for k in senders},
        app_env={
            "AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS": str(block_txs),
            "AUTHCHAIN_CONSENSUS__MAX_BLOCK_SIZE_BYTES": str(block_bytes),
        },
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


GRPC_BLOCK_BYTES = GRPC_MAX_ANSWER_BYTES
"""The block cap of the transport comparison, for both transports: the largest a gRPC app
may propose (CometBFT's gRPC client reads answers of at most 4 MiB)."""
TRANSPORTS = ("socket", "grpc")


def transport_rates(n: int, root: Path, count: int) -> dict[str, float]:
    """authchain over the ABCI socket and over gRPC (`--transports`): a network of each on the
    same shape and settings, blocks of at most `GRPC_BLOCK_BYTES`, `count` fresh transfers sent
    at the first of `CONCURRENCY`; the rates, the gRPC network's as a ratio to the socket's,
    and the CPU per committed tx."""
    row: dict[str, float] = {"validators": n}
    for i, transport in enumerate(TRANSPORTS):
        senders = [crypto.KeyPair.generate(SigScheme.ML_DSA_65) for _ in range(count // 25)]
        sink = senders[0].account
        net = authchain_net(
            root / f"{transport}{n}", n, f"127.0.{60 + 10 * i + n}.1", senders,
            block_txs=count, block_bytes=GRPC_BLOCK_BYTES, abci_transport=transport,
            mempool="cometbft",  # every CheckTx and recheck crosses the transport too
        )  # fmt: skip
        txs = transfers(senders, 25, sink)
        print(f"  authchain over {transport}, {len(txs)} txs ...", flush=True)
        net.start()
        try:
            pids = {"cometbft": pids_of(net, "comet"), "app": pids_of(net, "app")}
            run = saturate(net, txs, pids, CONCURRENCY[0])
        finally:
            net.stop()
        row |= {f"{transport}_{key}": value for key, value in run.items()}
    for rate in ("tx_per_s", "steady_tx_per_s"):
        row[f"grpc_ratio_to_socket_{rate}"] = row[f"grpc_{rate}"] / row[f"socket_{rate}"]
    return row


def measure(
    n: int, window: float, transfers_n: int, registrations: int, root: Path, bulk: int
) -> dict[str, float]:
    print(f"  CometBFT's kvstore, in-process and over the socket, {bulk} txs each ...", flush=True)
    kv = kvstore_rate(n, root, bulk, "kvstore")
    socket_kv = kvstore_rate(n, root, bulk, "socket-kvstore")
    owner = crypto.KeyPair.generate(SigScheme.ED25519)
    # each sender's txs go to one validator (tx i to validator i % n, senders interleaved:
    # sender counts are multiples of 4), as a wallet sends to its node, so none arrives at a
    # validator before its predecessor (next-nonce-only admission would refuse it)
    senders = {  # fresh senders for each run
        c: [crypto.KeyPair.generate(SigScheme.ML_DSA_65) for _ in range(bulk // 25)]
        for c in CONCURRENCY
    }
    flooders = [crypto.KeyPair.generate(SigScheme.ML_DSA_65) for _ in range(48)]
    everyone = [owner, *flooders, *(k for ks in senders.values() for k in ks)]
    funded = {str(k.account): 10**9 for k in everyone}
    net = Testnet(
        root / f"net{n}", validators=n, first_ip=f"127.0.{40 + n}.1", repo=REPO,
        gateway_port=free_port(), gateway_metrics_port=free_port(),
        timeout_commit=f"{COMMIT_SECS:g}s", funded=funded, mempool="cometbft",
        app_env={
            "AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS": str(10 * bulk),
            "AUTHCHAIN_CONSENSUS__MAX_BLOCK_SIZE_BYTES": str(64 * 1024 * 1024),
        },
    )  # fmt: skip
    paths, evidence = variants(root / f"models{n}", owner, 3 * registrations)
    print(f"  signing {bulk} ML-DSA-65 transfers for each of {CONCURRENCY} ...", flush=True)
    bulk_txs = {c: transfers(senders[c], 25, owner.account) for c in CONCURRENCY}
    flood_txs = transfers(flooders, 60, owner.account)
    net.start()
    try:
        gw = GatewayClient(net.gateway_url)
        ml = MlServiceClient(net.nodes[0].ml_url)
        # blocks per second while idle
        start_height, started = net.height(0), time.monotonic()
        time.sleep(window)
        blocks_per_s = (net.height(0) - start_height) / (time.monotonic() - started)
        # commit latency of signed transfers, one at a time
        payer = crypto.read_key_file(FUNDED)
        latencies = []
        for _ in range(transfers_n):
            nonce = gw.account(payer.account)["next_nonce"]
            tx = crypto.sign_tx(
                TxTransfer(payer.account, owner.account, 1, MIN_FEE, nonce), payer, CHAIN
            )
            sent = time.monotonic()
            status = gw.wait_for_tx(gw.submit(tx), timeout=60)
            assert status.status == "committed", status
            latencies.append(time.monotonic() - sent)
        # committed ML-DSA-65 transfers per second at saturation, against kvstore's
        print(f"  authchain, {bulk} txs ...", flush=True)
        pids = {"cometbft": pids_of(net, "comet"), "app": pids_of(net, "app")}
        runs = {c: saturate(net, bulk_txs[c], pids, c) for c in CONCURRENCY}
        # registrations per second: all submitted at once, files uploaded to validator 0 only
        evidence_hash = EvidenceHash.from_hex(ml.upload_evidence(evidence))
        uploaded = [Aid.from_hex(ml.upload_artefact(p)) for p in paths]
        floor_aids = uploaded[:registrations]
        idle_aids = uploaded[registrations : 2 * registrations]
        loaded_aids = uploaded[2 * registrations :]
        # the floor: validator 0's service alone, cold
        verify_rate = verify_floor(net.nodes[0].ml_url, owner.account, floor_aids, evidence_hash)
        sketches = {  # declared in each registration; computed here, as an owner would
            aid: artefact_sketch(path) for aid, path in zip(uploaded, paths, strict=True)
        }

        def register(aids: list[Aid]) -> tuple[float, int]:
            submitted = time.monotonic()
            hashes = [
                gw.register_signed(owner, aid, evidence_hash, PROFILE, sketch=sketches[aid])
                for aid in aids
            ]
            statuses = [gw.wait_for_tx(h, timeout=300) for h in hashes]
            rate = len(aids) / (time.monotonic() - submitted)
            return rate, sum(s.status == "committed" for s in statuses)

        registrations_per_s, committed = register(idle_aids)
        # ... and while strangers flood the network with transfers
        print(f"  registrations under a flood of {len(flood_txs)} transfers ...", flush=True)
        flood = threading.Thread(
            target=loadgen.replay, args=([node.rpc_url for node in net.nodes], flood_txs),
            kwargs={"repo": REPO, "concurrency": 32}, daemon=True,
        )  # fmt: skip
        flood.start()
        loaded_per_s, loaded_committed = register(loaded_aids)
        flood.join()
        gw.close()
        ml.close()
    finally:
        net.stop()
    latencies.sort()
    ours, kv_32, socket_32 = runs[CONCURRENCY[0]], kv[CONCURRENCY[0]], socket_kv[CONCURRENCY[0]]
    by_concurrency: dict[str, float] = {}
    for c in CONCURRENCY:
        for head, rate in (("", "tx_per_s"), ("steady_", "steady_tx_per_s")):
            by_concurrency |= {
                f"{head}transfers_per_s_c{c}": runs[c][rate],
                f"{head}kvstore_txs_per_s_c{c}": kv[c][rate],
                f"{head}socket_kvstore_txs_per_s_c{c}": socket_kv[c][rate],
                f"{head}ratio_to_kvstore_c{c}": runs[c][rate] / kv[c][rate],
                f"{head}ratio_to_socket_kvstore_c{c}": runs[c][rate] / socket_kv[c][rate],
            }
    return {
        "validators": n,
        "blocks_per_s": blocks_per_s,
        "blocks_ratio_to_floor": blocks_per_s * COMMIT_SECS,
        "commit_latency_median_s": statistics.median(latencies),
        "commit_latency_p90_s": latencies[int(0.9 * (len(latencies) - 1))],
        "latency_ratio_to_timeout_commit": statistics.median(latencies) / COMMIT_SECS,
        "transfers_per_s": ours["tx_per_s"],
        "kvstore_txs_per_s": kv_32["tx_per_s"],
        "ratio_to_kvstore": ours["tx_per_s"] / kv_32["tx_per_s"],
        "socket_kvstore_txs_per_s": socket_32["tx_per_s"],
        "ratio_to_socket_kvstore": ours["tx_per_s"] / socket_32["tx_per_s"],
        **by_concurrency,
        "transfers_committed": ours["committed"],
        "kvstore_committed": kv_32["committed"],
        "socket_kvstore_committed": socket_32["committed"],
        "largest_block_gap_s": ours["largest_block_gap_s"],
        "cometbft_cpu_ms_per_tx": ours["cometbft_cpu_ms_per_tx"],
        "app_cpu_ms_per_tx": ours["app_cpu_ms_per_tx"],
        "kvstore_cometbft_cpu_ms_per_tx": kv_32["cometbft_cpu_ms_per_tx"],
        "socket_kvstore_cometbft_cpu_ms_per_tx": socket_32["cometbft_cpu_ms_per_tx"],
        "socket_kvstore_app_cpu_ms_per_tx": socket_32["app_cpu_ms_per_tx"],
        "registrations_per_s": registrations_per_s,
        "registrations_committed": committed,
        "registrations_under_flood_per_s": loaded_per_s,
        "registrations_under_flood_committed": loaded_committed,
        "verify_floor_per_s": verify_rate,
        "registrations_ratio_to_verify_floor": registrations_per_s / verify_rate,
        "under_flood_ratio_to_verify_floor": loaded_per_s / verify_rate,
    }


APP_BATCH, APP_CALLS = 250, 4
"""The load where the apps hold the pending txs: batches of 250 pre-signed transfers posted to
the validators' intakes (`POST /txs/batch`, batch i to validator i mod n), 4 calls in flight."""
MEMPOOLS = ("cometbft", "app")
PER_SENDER = 16
"""Transfers per sender in `--mempools`: nonces 0-15 stay within `max_nonce_gap` of the
committed nonce in whatever order a sender's txs reach the app pools."""


FLOOD_REGISTRATIONS = 4
"""Registrations `--mempools` makes while its transfers flood each network (deliverable 5 of
issue 23: a flood of transfers must not starve V_auth)."""


class Registrations(threading.Thread):
    """Once the network holds a flood's worth of pending txs, register the model variants
    `aids` through the gateway (the owner's nonces 0, 1, ...), all at once, and wait for them:
    `result` is the rate and how many committed."""

    def __init__(self, net: Testnet, owner: crypto.KeyPair, aids: Sequence[Aid],
                 evidence: EvidenceHash, sketches: Sequence[bytes]) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.net, self.owner, self.aids = net, owner, aids
        self.evidence, self.sketches = evidence, sketches
        self.result = {"per_s": float("nan"), "committed": 0.0}

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while pending(self.net) < 1_000 and time.monotonic() < deadline:
            time.sleep(0.2)
        gw = GatewayClient(self.net.gateway_url)
        try:
            started = time.monotonic()
            hashes = [
                gw.register_signed(
                    self.owner, aid, self.evidence, PROFILE, sketch=sketch, nonce=nonce
                )
                for nonce, (aid, sketch) in enumerate(zip(self.aids, self.sketches, strict=True))
            ]
            statuses = [gw.wait_for_tx(h, timeout=300) for h in hashes]
            self.result = {
                "per_s": len(hashes) / (time.monotonic() - started),
                "committed": float(sum(s.status == "committed" for s in statuses)),
            }
        finally:
            gw.close()


def registrations_beside(
    net: Testnet,
    owner: crypto.KeyPair,
    paths: Sequence[Path],
    evidence: Path,
    sketches: Sequence[bytes],
) -> tuple[float, Registrations]:
    """Upload the variants to validator 0's ML service; the floor (its `/verify` of the first
    half, back to back, cold: variants/s), and a started `Registrations` of the second half,
    which waits for the flood."""
    ml = MlServiceClient(net.nodes[0].ml_url)
    try:
        evidence_hash = EvidenceHash.from_hex(ml.upload_evidence(evidence))
        aids = [Aid.from_hex(ml.upload_artefact(p)) for p in paths]
    finally:
        ml.close()
    half = len(aids) // 2
    floor = verify_floor(net.nodes[0].ml_url, owner.account, aids[:half], evidence_hash)
    registered = Registrations(net, owner, aids[half:], evidence_hash, sketches[half:])
    registered.start()
    return floor, registered


def mempool_rates(n: int, root: Path, count: int) -> dict[str, float]:
    """`--mempools`: CometBFT's in-process kvstore (at each of `CONCURRENCY`), authchain with
    CometBFT's mempool (32 broadcast_tx_sync calls in flight) and authchain with the apps
    holding the pending txs (`APP_BATCH` per call, `APP_CALLS` in flight), on the same
    network shape and settings; each sent `count` fresh ML-DSA-65 transfers (or kvstore txs
    of the same size). Rates, ratios to the kvstore's best, and CPU per committed tx."""
    kv = kvstore_rate(n, root, count, "kvstore")
    best = {rate: max(kv[c][rate] for c in CONCURRENCY) for rate in ("tx_per_s", "steady_tx_per_s")}
    row: dict[str, float] = {"validators": n}
    for c in CONCURRENCY:
        row |= {
            f"kvstore_c{c}": kv[c]["tx_per_s"],
            f"steady_kvstore_c{c}": kv[c]["steady_tx_per_s"],
        }
    owner = crypto.KeyPair.generate(SigScheme.ED25519)
    paths, evidence = variants(root / f"models{n}", owner, 2 * FLOOD_REGISTRATIONS)
    sketches = [artefact_sketch(path) for path in paths]
    for i, mempool in enumerate(MEMPOOLS):
        # each sender's txs to one validator under CometBFT's mempool (tx i to validator
        # i mod n, senders interleaved: a multiple of 4 of them), whose apps admit only a
        # sender's next nonce
        senders, flooders = (
            [
                crypto.KeyPair.generate(SigScheme.ML_DSA_65)
                for _ in range(txs_n // PER_SENDER // 4 * 4)
            ]
            for txs_n in (count, count // 2)
        )
        sink = crypto.KeyPair.generate(SigScheme.ED25519).account
        net = authchain_net(
            root / f"{mempool}{n}", n, f"127.0.{80 + 10 * i + n}.1",
            [*senders, *flooders, owner], block_txs=10 * count, block_bytes=64 * 1024 * 1024,
            mempool=mempool,
        )  # fmt: skip
        txs, flood = transfers(senders, PER_SENDER, sink), transfers(flooders, PER_SENDER, sink)
        load = (APP_CALLS, APP_BATCH) if mempool == "app" else (CONCURRENCY[0], 0)
        net.start()
        try:
            pids = {"cometbft": pids_of(net, "comet"), "app": pids_of(net, "app")}
            run = saturate(net, txs, pids, *load)
            # then registrations while fresh transfers flood the network the same way
            floor, registered = registrations_beside(net, owner, paths, evidence, sketches)
            loadgen.replay(senders_to(net), flood, repo=REPO, concurrency=load[0], batch=load[1])
            registered.join(timeout=600)
        finally:
            net.stop()
        under_flood = registered.result
        row |= {
            f"{mempool}_verify_floor_per_s": floor,
            f"{mempool}_registrations_under_flood_per_s": under_flood["per_s"],
            f"{mempool}_registrations_under_flood_committed": under_flood["committed"],
            f"{mempool}_under_flood_ratio_to_verify_floor": under_flood["per_s"] / floor,
        }
        row |= {
            f"{mempool}_tx_per_s": run["tx_per_s"],
            f"{mempool}_steady_tx_per_s": run["steady_tx_per_s"],
            f"{mempool}_ratio_to_kvstore": run["tx_per_s"] / best["tx_per_s"],
            f"{mempool}_steady_ratio_to_kvstore": run["steady_tx_per_s"] / best["steady_tx_per_s"],
            f"{mempool}_committed": run["committed"],
            f"{mempool}_largest_block_gap_s": run["largest_block_gap_s"],
            f"{mempool}_cometbft_cpu_ms_per_tx": run["cometbft_cpu_ms_per_tx"],
            f"{mempool}_app_cpu_ms_per_tx": run["app_cpu_ms_per_tx"],
        }
    row["kvstore_steady_tx_per_s"] = best["steady_tx_per_s"]
    row["kvstore_cometbft_cpu_ms_per_tx"] = kv[CONCURRENCY[0]]["cometbft_cpu_ms_per_tx"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--quick", action="store_true", help="short window, few txs")
    parser.add_argument("--out", type=Path, default=Path("data/bench/cometbft"))
    parser.add_argument(
        "--mempools",
        action="store_true",
        help="only compare authchain with CometBFT's mempool and with the apps holding the "
        "pending txs, against the in-process kvstore (mempool.csv)",
    )
    parser.add_argument(
        "--transports",
        action="store_true",
        help="only compare authchain over the ABCI socket and over gRPC (transport.csv)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    window, latency_txs, registrations = (5.0, 3, 3) if args.quick else (30.0, 20, 10)
    bulk = 2_000 if args.quick else 10_000
    one: Callable[..., dict[str, float]]
    if args.mempools:
        name, what = "mempool", "kvstore, CometBFT's mempool, the apps'"
        one = partial(mempool_rates, count=bulk)
    elif args.transports:
        name, what = "transport", "ABCI socket against gRPC"
        one = partial(transport_rates, count=2_000 if args.quick else 4_000)
    else:
        name, what = "cometbft", "starting"
        one = partial(
            measure, window=window, transfers_n=latency_txs, registrations=registrations, bulk=bulk
        )
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.validators:
            print(f"{n} validator(s): {what} ...", flush=True)
            rows.append(one(n, root=Path(tmp)))
            print("  " + ", ".join(f"{k}={v:.3g}" for k, v in rows[-1].items()), flush=True)
    write_csv(rows, args.out / f"{name}.csv")
    if args.mempools:
        plot_comparison(rows, args.out / "mempool.png", MEMPOOLS, "committed txs/s, steady state",
                        anchor="kvstore")  # fmt: skip
    elif args.transports:
        plot_comparison(rows, args.out / "transport.png", TRANSPORTS,
                        "committed txs/s, steady state (blocks <= 4 MiB)")  # fmt: skip
    else:
        plot(rows, args.out / "cometbft.png")
    print(f"wrote {args.out / name}.csv and .png")


def write_csv(rows: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


LABELS = {
    "cometbft": "authchain, CometBFT's mempool",
    "app": "authchain, the apps' pools",
    "kvstore": "kvstore inside CometBFT",
}


def plot_comparison(
    rows: list[dict[str, float]],
    path: Path,
    variants: Sequence[str],
    rate_title: str,
    anchor: str | None = None,
) -> None:
    """`--transports`, `--mempools`: steady txs/s of each variant (and of the `anchor`, the
    kvstore inside CometBFT, where there is one), and each one's CPU per committed tx,
    CometBFT's and the app's stacked."""
    fig, (rate, cpu) = plt.subplots(1, 2, figsize=(9, 3.4))
    x = list(range(len(rows)))
    bars = [*variants, *([anchor] if anchor else [])]
    width = 0.8 / len(bars)
    for i, variant in enumerate(bars):
        offset = [p + (i - (len(bars) - 1) / 2) * width for p in x]
        label = LABELS.get(variant, variant)
        rate.bar(offset, [r[f"{variant}_steady_tx_per_s"] for r in rows], width, label=label,
                 color=f"C{i}")  # fmt: skip
        comet = [r[f"{variant}_cometbft_cpu_ms_per_tx"] for r in rows]
        cpu.bar(offset, comet, width, label=f"{label}: CometBFT", color=f"C{i}")
        if variant != anchor:  # the anchor's app runs inside CometBFT
            app = [r[f"{variant}_app_cpu_ms_per_tx"] for r in rows]
            cpu.bar(offset, app, width, bottom=comet, label=f"{label}: app", color=f"C{i}",
                    alpha=0.45)  # fmt: skip
    cpu_title = "CPU ms per committed tx, all processes"
    for ax, title, corner in ((rate, rate_title, "upper right"), (cpu, cpu_title, "upper left")):
        ax.set_xticks(x, [f"{int(r['validators'])} val." for r in rows])
        ax.set_title(title, fontsize=9)
        ax.set_ylim(top=1.5 * ax.get_ylim()[1])  # room for the legend above the bars
        ax.legend(fontsize=7, loc=corner)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot(rows: list[dict[str, float]], path: Path) -> None:
    fig, axes = plt.subplots(1, 5, figsize=(19, 3.4))
    labels = [f"{int(r['validators'])} val." for r in rows]
    x = range(len(rows))

    def bars(ax: Axes, series: list[tuple[str, str]], title: str) -> None:
        width = 0.8 / len(series)
        for i, (key, name) in enumerate(series):
            offset = [p + (i - (len(series) - 1) / 2) * width for p in x]
            ax.bar(offset, [r[key] for r in rows], width, label=name)
        ax.set_xticks(list(x), labels)
        ax.set_title(title, fontsize=9)
        if len(series) > 1:
            ax.legend(fontsize=7)

    bars(axes[0], [("blocks_per_s", "idle")], "blocks/s (floor 1/timeout_commit = 1)")
    bars(axes[1], [("commit_latency_median_s", "median")], "commit latency of a transfer (s)")
    bars(
        axes[2],
        [
            ("transfers_per_s", "authchain (ML-DSA-65)"),
            ("socket_kvstore_txs_per_s", "kvstore, ABCI socket"),
            ("kvstore_txs_per_s", "kvstore, in CometBFT"),
        ],
        f"committed txs/s, a burst of 5.35 KB txs, {CONCURRENCY[0]} in flight",
    )
    top = CONCURRENCY[-1]
    bars(
        axes[3],
        [
            (f"steady_transfers_per_s_c{top}", "authchain (ML-DSA-65)"),
            (f"steady_socket_kvstore_txs_per_s_c{top}", "kvstore, ABCI socket"),
            (f"steady_kvstore_txs_per_s_c{top}", "kvstore, in CometBFT"),
        ],
        f"committed txs/s, steady state, {top} in flight",
    )
    bars(
        axes[4],
        [
            ("registrations_per_s", "idle"),
            ("registrations_under_flood_per_s", "under a transfer flood"),
            ("verify_floor_per_s", "one ML service's /verify"),
        ],
        "registrations/s",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
