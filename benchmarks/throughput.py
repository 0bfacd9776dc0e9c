"""Committed signed transfers per second on one node, as a ratio to one core's signature
verify rate measured in the same run.

    .venv/bin/python benchmarks/throughput.py                      # ML-DSA-65, 2,000 txs
    .venv/bin/python benchmarks/throughput.py --scheme ed25519 --txs 500

A real devnet (ML service, node, gateway; RocksDB; block_time 0.5 s) with the pool policy
opened up for one sender. A fresh key of the scheme is funded, then N transfers it signed in
advance are posted to the node's RPC (one keep-alive client, one request at a time) and the
benchmark waits until every one is committed. tx/s = N / (first post -> last commit). The
floor is how many signatures of the same scheme one core verifies per second, here and now.
Writes CSV and a PNG (committed txs over time) to --out. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from authchain.chain import codec, crypto
from authchain.chain.schemas import encode_tx_hex
from authchain.chain.types import SigScheme, TxTransfer
from authchain.devnet import Devnet, DevnetPorts

REPO = Path(__file__).resolve().parents[1]
FUNDED = crypto.read_key_file(REPO / "configs" / "devnet-account.key")
CHAIN = "authchain-devnet"


def verify_floor(scheme: SigScheme, seconds: float = 2.0) -> float:
    """Signatures of `scheme` one core verifies per second (the same message, fresh calls)."""
    key = crypto.KeyPair.generate(scheme)
    message = b"authchain throughput floor" * 8
    signature = key.sign(message)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        crypto.verify_signature(scheme, key.public_key, message, signature)
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=["ml-dsa-65", "ed25519"], default="ml-dsa-65")
    parser.add_argument("--txs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("data/bench/throughput"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scheme = SigScheme(args.scheme)
    floor = verify_floor(scheme)
    print(f"floor: {floor:,.0f} {scheme.value} verifications/s on one core")

    sender = crypto.KeyPair.generate(scheme)
    txs = [
        crypto.sign_tx(TxTransfer(sender.account, FUNDED.account, 1, 0, n), sender, CHAIN)
        for n in range(args.txs)
    ]
    policy = {
        "AUTHCHAIN_CONSENSUS__BLOCK_TIME_SECS": "0.5",
        "AUTHCHAIN_CONSENSUS__MAX_POOL_TXS": str(args.txs + 10),
        "AUTHCHAIN_CONSENSUS__MAX_POOL_TXS_PER_SENDER": str(args.txs + 10),
        "AUTHCHAIN_CONSENSUS__MAX_NONCE_GAP": str(args.txs + 10),
    }
    with tempfile.TemporaryDirectory() as tmp:
        net = Devnet(Path(tmp), ports=DevnetPorts.free(), repo=REPO, extra_env=policy)
        net.start()
        try:
            with httpx.Client(base_url=net.rpc_url, timeout=30) as rpc:
                fund = crypto.sign_tx(
                    TxTransfer(FUNDED.account, sender.account, 10 * args.txs, 0,
                               rpc.get(f"/accounts/{FUNDED.account}").json()["next_nonce"]),
                    FUNDED, CHAIN,
                )  # fmt: skip
                rpc.post("/txs", json={"tx": encode_tx_hex(fund)}).raise_for_status()
                while (
                    rpc.get(f"/txs/{codec.compute_tx_hash(fund)}").json()["status"] != "committed"
                ):
                    time.sleep(0.1)
                started = time.monotonic()
                for tx in txs:
                    rpc.post("/txs", json={"tx": encode_tx_hex(tx)}).raise_for_status()
                submitted = time.monotonic() - started
                progress = []
                while True:
                    nonce = rpc.get(f"/accounts/{sender.account}").json()["nonce"]
                    progress.append((time.monotonic() - started, nonce))
                    if nonce >= args.txs:
                        break
                    time.sleep(0.1)
            elapsed = progress[-1][0]
        finally:
            net.stop()
    rate = args.txs / elapsed
    row = {
        "scheme": scheme.value, "txs": args.txs, "submit_s": round(submitted, 3),
        "commit_s": round(elapsed, 3), "committed_tx_per_s": round(rate, 1),
        "verify_floor_per_s": round(floor, 1), "ratio_to_floor": round(rate / floor, 4),
    }  # fmt: skip
    print(", ".join(f"{k}={v}" for k, v in row.items()))
    with (args.out / f"throughput-{scheme.value}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([t for t, _ in progress], [n for _, n in progress], color="#4c72b0")
    ax.set_xlabel("seconds since the first post")
    ax.set_ylabel("committed txs")
    ax.set_title(
        f"{args.txs} {scheme.value} transfers: {rate:.0f} tx/s = {rate / floor:.3f}× floor"
    )
    fig.tight_layout()
    fig.savefig(args.out / f"throughput-{scheme.value}.png", dpi=120)
    print(f"wrote {args.out}/throughput-{scheme.value}.csv and .png")


if __name__ == "__main__":
    main()
