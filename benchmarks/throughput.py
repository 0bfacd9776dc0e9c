"""Committed signed transfers per second on one node, as a ratio to one core's signature
verify rate measured in the same run.

    .venv/bin/python benchmarks/throughput.py                      # ML-DSA-65, 8,000 txs
    .venv/bin/python benchmarks/throughput.py --scheme ed25519 --txs 2000
    .venv/bin/python benchmarks/throughput.py --batch 1            # one request per tx

A real devnet (ML service, node, gateway; RocksDB; block_time 0.5 s) with the pool policy
opened up and blocks big enough for the load. `--senders` fresh keys of the scheme are funded,
then N transfers they signed in advance are posted to the node's RPC, `--batch` per request
(`POST /txs/batch`; 1 posts each to `POST /txs`), from `--clients` concurrent keep-alive
clients, and the benchmark waits until every one is committed. tx/s = N / (first post -> last
commit). The floor is how many signatures of the same scheme one core verifies per second, here
and now. Writes CSV and a PNG (committed txs over time) to --out. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from authchain.chain import crypto
from authchain.chain.schemas import encode_tx_hex
from authchain.chain.types import SigScheme, TxTransfer
from authchain.devnet import Devnet, DevnetPorts

REPO = Path(__file__).resolve().parents[1]
FUNDED = crypto.read_key_file(REPO / "configs" / "devnet-account.key")
CHAIN = "authchain-devnet"


def post(client: httpx.Client, txs: list[TxTransfer]) -> None:
    """Submit `txs`: one `POST /txs/batch`, or `POST /txs` each for a batch of one."""
    if len(txs) == 1:
        client.post("/txs", json={"tx": encode_tx_hex(txs[0])}).raise_for_status()
        return
    answer = client.post("/txs/batch", json={"txs": [encode_tx_hex(tx) for tx in txs]})
    answer.raise_for_status()
    if answer.json()["accepted"] != len(txs):
        raise SystemExit(f"a batch was not fully accepted: {answer.text[:500]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=["ml-dsa-65", "ed25519"], default="ml-dsa-65")
    parser.add_argument("--txs", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=250, help="txs per request (1: POST /txs)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent submitters")
    parser.add_argument("--senders", type=int, default=8, help="accounts the txs come from")
    parser.add_argument("--out", type=Path, default=Path("data/bench/throughput"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scheme = SigScheme(args.scheme)
    floor = crypto.verify_rate(scheme)
    print(f"floor: {floor:,.0f} {scheme.value} verifications/s on one core")

    senders = [crypto.KeyPair.generate(scheme) for _ in range(args.senders)]
    per_sender = -(-args.txs // args.senders)
    txs = [
        crypto.sign_tx(TxTransfer(s.account, FUNDED.account, 1, 0, n), s, CHAIN)
        for n in range(per_sender)
        for s in senders
    ][: args.txs]
    batches = [txs[i : i + args.batch] for i in range(0, len(txs), args.batch)]
    policy = {
        "AUTHCHAIN_CONSENSUS__BLOCK_TIME_SECS": "0.5",
        "AUTHCHAIN_CONSENSUS__MAX_POOL_TXS": str(args.txs + 10),
        "AUTHCHAIN_CONSENSUS__MAX_POOL_TXS_PER_SENDER": str(per_sender + 10),
        "AUTHCHAIN_CONSENSUS__MAX_NONCE_GAP": str(per_sender + 10),
        "AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS": str(args.txs),
        "AUTHCHAIN_CONSENSUS__MAX_BLOCK_SIZE_BYTES": str(64 * 1024 * 1024),
    }
    with tempfile.TemporaryDirectory() as tmp:
        net = Devnet(Path(tmp), ports=DevnetPorts.free(), repo=REPO, extra_env=policy)
        net.start()
        try:
            with httpx.Client(base_url=net.rpc_url, timeout=60) as rpc:
                first = rpc.get(f"/accounts/{FUNDED.account}").json()["next_nonce"]
                funding = [
                    crypto.sign_tx(
                        TxTransfer(FUNDED.account, s.account, 10 * per_sender, 0, first + i),
                        FUNDED,
                        CHAIN,
                    )
                    for i, s in enumerate(senders)
                ]
                post(rpc, funding)
                while rpc.get(f"/accounts/{FUNDED.account}").json()["nonce"] < first + len(senders):
                    time.sleep(0.1)
                started = time.monotonic()
                with ThreadPoolExecutor(args.clients) as pool:
                    clients = [
                        httpx.Client(base_url=net.rpc_url, timeout=120) for _ in range(args.clients)
                    ]

                    def submit(i: int) -> None:
                        for batch in batches[i :: args.clients]:
                            post(clients[i], batch)

                    list(pool.map(submit, range(args.clients)))
                    for client in clients:
                        client.close()
                submitted = time.monotonic() - started
                progress = []
                while True:
                    done = sum(rpc.get(f"/accounts/{s.account}").json()["nonce"] for s in senders)
                    progress.append((time.monotonic() - started, done))
                    if done >= args.txs:
                        break
                    time.sleep(0.1)
            elapsed = progress[-1][0]
        finally:
            net.stop()
    rate = args.txs / elapsed
    row = {
        "scheme": scheme.value, "txs": args.txs, "batch": args.batch, "clients": args.clients,
        "senders": args.senders, "submit_s": round(submitted, 3),
        "commit_s": round(elapsed, 3), "committed_tx_per_s": round(rate, 1),
        "verify_floor_per_s": round(floor, 1), "ratio_to_floor": round(rate / floor, 4),
    }  # fmt: skip
    print(", ".join(f"{k}={v}" for k, v in row.items()))
    stem = f"throughput-{scheme.value}-batch{args.batch}"
    with (args.out / f"{stem}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([t for t, _ in progress], [n for _, n in progress], color="#4c72b0")
    ax.set_xlabel("seconds since the first post")
    ax.set_ylabel("committed txs")
    ax.set_title(
        f"{args.txs} {scheme.value} transfers, batches of {args.batch}: {rate:.0f} tx/s "
        f"= {rate / floor:.3f}× floor"
    )
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}.png", dpi=120)
    print(f"wrote {args.out}/{stem}.csv and .png")


if __name__ == "__main__":
    main()
