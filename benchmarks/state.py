"""Per-block state cost as the state grows: the application's finalize + commit on RocksDB, at
n accounts, as a ratio to the same at the smallest n, measured in the same run.

    .venv/bin/python benchmarks/state.py                     # 1k, 10k, 50k, 200k accounts
    .venv/bin/python benchmarks/state.py --accounts 1000 20000 --blocks 10

For each n: a genesis with n funded accounts (its tree is built once, in `init_chain`), then,
for each size in `--txs`, `--blocks` blocks of that many unsigned transfers between random
accounts (a devnet with impersonation, so no signature is in the measurement), each timed from
`finalize_block` to the end of `commit`. An empty block costs O(1); a block of k transfers
O(k log n): its tree work grows with log n, by ~1.7x from 1k to 200k accounts. Reported: the
median per block, the ratio to the smallest n, the tree nodes written per block, and, as the
before-picture, what recomputing the whole state's root from scratch costs at that n (what
every block paid, twice, before the tree). Writes CSV and a PNG to --out. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.progress import track

from authchain.chain.app import Application
from authchain.chain.config import ConsensusConfig
from authchain.chain.state import Genesis, compute_state_root, genesis_state
from authchain.chain.storage.rocksdb import RocksDbBlockStore
from authchain.chain.types import AccountId, Transaction, TxTransfer
from authchain.chain.validation.ml import Claim, MlValidity, Verdict

PROPOSER = AccountId(b"\xee" * 32)


class NoVerifier:
    """These blocks hold no registrations: V_auth is never asked."""

    async def verify(self, claim: Claim) -> Verdict:
        raise AssertionError("no registration in a state benchmark")


def account(i: int) -> AccountId:
    return AccountId(i.to_bytes(32, "big"))


def run(n: int, blocks: int, sizes: list[int], tmp: Path) -> list[dict[str, float]]:
    genesis = Genesis(
        chain_id="authchain-bench-devnet", timestamp_ms=0, min_fee=0, impersonation=True,
        validators=(), accounts=tuple((account(i), 10**9) for i in range(n)),
    )  # fmt: skip
    store = RocksDbBlockStore(tmp / f"state-{n}")
    app = Application(store, genesis, ConsensusConfig(), MlValidity(NoVerifier()))
    started = time.perf_counter()
    app.init_chain()
    genesis_s = time.perf_counter() - started
    state = genesis_state(genesis)
    started = time.perf_counter()
    compute_state_root(state.items())
    full_root_s = time.perf_counter() - started
    rng = random.Random(n)
    nonces = [0] * n
    rows = []
    for txs in sizes:
        per_block: list[float] = []
        nodes_written: list[int] = []
        for _ in range(blocks):
            block: list[Transaction | None] = []
            for _ in range(txs):
                sender = rng.randrange(n)
                tx = TxTransfer(account(sender), account(rng.randrange(n)), 1, 0, nonces[sender])
                nonces[sender] += 1
                block.append(tx)
            height = app.height + 1
            started = time.perf_counter()
            finalized = asyncio.run(app.finalize_block(block, height, PROPOSER, strict=True))
            pending = app._pending
            nodes_written.append(len(pending.tree.changed) if pending else 0)
            app.commit()
            per_block.append(time.perf_counter() - started)
            assert all(r.code == 0 for r in finalized.results)
        rows.append(
            {
                "accounts": n,
                "txs_per_block": txs,
                "block_ms_median": round(1000 * statistics.median(per_block), 3),
                "tree_nodes_written_per_block": statistics.median(nodes_written),
                "genesis_s": round(genesis_s, 2),
                "full_recompute_ms": round(1000 * full_root_s, 1),
            }
        )
    store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1000, 10_000, 50_000, 200_000])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument(
        "--txs", type=int, nargs="+", default=[0, 100], help="transfers per block (each size)"
    )
    parser.add_argument("--out", type=Path, default=Path("data/bench/state"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in track(sorted(args.accounts), description="state sizes"):
            rows.extend(run(n, args.blocks, args.txs, Path(tmp)))
    smallest = min(args.accounts)
    base = {r["txs_per_block"]: r["block_ms_median"] for r in rows if r["accounts"] == smallest}
    for row in rows:
        row["ratio_to_smallest"] = round(row["block_ms_median"] / base[row["txs_per_block"]], 3)
        print(", ".join(f"{k}={v}" for k, v in row.items()))
    with (args.out / "state.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for txs in args.txs:
        mine = [r for r in rows if r["txs_per_block"] == txs]
        ns = [r["accounts"] for r in mine]
        ax.plot(ns, [r["block_ms_median"] for r in mine], "o-", label=f"block of {txs} transfers")
    mine = [r for r in rows if r["txs_per_block"] == args.txs[0]]
    ax.plot(
        [r["accounts"] for r in mine], [r["full_recompute_ms"] for r in mine], "s--",
        label="one full root recompute (before)",
    )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("accounts in state")
    ax.set_ylabel("ms per block (finalize + commit)")
    ax.set_title("State commitment cost per block")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "state.png", dpi=120)
    print(f"wrote {args.out}/state.csv and state.png")


if __name__ == "__main__":
    main()
