"""The explorer's claim queries as the chain's registrations grow: `queries.claims` at n
claim records on RocksDB, as a ratio to the same query at the smallest n, measured in the same
run, next to what a scan of every record (the implementation before `ClaimIndex`) costs.

    .venv/bin/python benchmarks/claims.py                     # 1k, 10k, 100k records
    .venv/bin/python benchmarks/claims.py --records 1000 20000 --repeats 50

For each n: n claim records written to a RocksDB store (nine in ten committed, one in ten
rejected; 1,000 owners; one committed model in five a fine-tune of an earlier one), then an
`Application` opened on it (its index is built from the store: `open_ms`). Timed, as the
median of `--repeats` calls: the overview's reads (the newest 10 pending, 100 committed and
100 rejected claims), a model page's (the claims on one aid), a lineage step's (the fine-tunes
of one parent) and an account page's (one owner's claims, up to 50: more of them as n
grows); `found` is how many claims each returned. Each query is first checked to find the same
claims as the scan. Writes CSV and a PNG to --out; nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

from authchain.chain.schemas import ClaimQuery

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.progress import track

from authchain.chain.app import Application
from authchain.chain.claims import ClaimRecord, ClaimStatus, decode_claim, encode_claim
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.store import Commit
from authchain.chain.queries import claims as list_claims
from authchain.chain.state import Genesis
from authchain.chain.storage.rocksdb import RocksDbBlockStore
from authchain.chain.types import AccountId, Aid, TxHash
from authchain.chain.validation.ml import Claim, MlValidity, Verdict

GENESIS = Genesis(
    chain_id="authchain-bench-devnet", timestamp_ms=0, min_fee=0, impersonation=True,
    validators=(), accounts=(),
)  # fmt: skip
OWNERS = 1000
PER_BLOCK = 10


class NoVerifier:
    """Nothing is verified here: the records are written as they would have been judged."""

    async def verify(self, claim: Claim) -> Verdict:
        raise AssertionError("no verification in a claims benchmark")


def ident(kind: int, i: int) -> bytes:
    return kind.to_bytes(1, "big") + i.to_bytes(31, "big")


def records(n: int, rng: random.Random) -> dict[TxHash, ClaimRecord]:
    out = {}
    for i in range(n):
        status: ClaimStatus = "rejected" if i % 10 == 9 else "committed"
        parents = (str(Aid(ident(1, rng.randrange(i)))),) if i and i % 5 == 0 else ()
        out[TxHash(ident(3, i))] = ClaimRecord(
            aid=str(Aid(ident(1, i))), owner=str(AccountId(ident(2, rng.randrange(OWNERS)))),
            height=i // PER_BLOCK + 1, status=status, trigger_acc=1.0, feat_dist=0.02,
            logit_stat=0.0, p_value=1e-90, feat_p_value=1e-28, log2_p_value=-300.0,
            log2_feat_p_value=-95.0, parents=parents if status == "committed" else (),
        )  # fmt: skip
    return out


def scan(store: RocksDbBlockStore, want: Callable[[ClaimRecord], bool], limit: int) -> list[str]:
    """The query as it was before the index: decode every record, filter, sort. The tx
    hashes found, newest first."""
    found = [(r.height, bytes(h)) for h, raw in store.iter_claims() if want(r := decode_claim(raw))]
    found.sort(reverse=True)
    return [raw.hex() for _, raw in found[:limit]]


def hashes(claims: list[dict[str, Any]]) -> list[str]:
    return [str(c["tx_hash"]) for c in claims]


def median_ms(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 4)


def run(n: int, repeats: int, tmp: Path) -> list[dict[str, Any]]:
    rng = random.Random(n)
    written = records(n, rng)
    store = RocksDbBlockStore(tmp / f"claims-{n}")
    store.commit(Commit(claims={h: encode_claim(r) for h, r in written.items()}))
    started = time.perf_counter()
    app = Application(store, GENESIS, ConsensusConfig(), MlValidity(NoVerifier()))
    open_ms = round(1000 * (time.perf_counter() - started), 1)
    one_aid = Aid(ident(1, n // 2))
    parent = Aid.from_hex(next(r.parents[0] for r in written.values() if r.parents))
    owner = AccountId(ident(2, 7))

    def overview() -> list[str]:
        return [
            *hashes(list_claims(app, ClaimQuery(status="pending", limit=10))),
            *hashes(list_claims(app, ClaimQuery(status="committed", limit=100))),
            *hashes(list_claims(app, ClaimQuery(status="rejected", limit=100))),
        ]

    queries: dict[str, tuple[Callable[[], list[str]], Callable[[], list[str]]]] = {
        "overview": (
            overview,
            lambda: [
                *scan(store, lambda r: r.status == "committed", 100),
                *scan(store, lambda r: r.status == "rejected", 100),
            ],
        ),
        "model": (
            lambda: hashes(list_claims(app, ClaimQuery(aid=one_aid))),
            lambda: scan(store, lambda r: r.aid == str(one_aid), 50),
        ),
        "lineage_step": (
            lambda: hashes(
                list_claims(app, ClaimQuery(parent=parent, status="committed", limit=61))
            ),
            lambda: scan(store, lambda r: str(parent) in r.parents, 61),
        ),
        "account": (
            lambda: hashes(list_claims(app, ClaimQuery(owner=owner))),
            lambda: scan(store, lambda r: r.owner == str(owner), 50),
        ),
    }
    rows = []
    for name, (indexed, scanned) in queries.items():
        found = indexed()
        if found != scanned():
            raise SystemExit(f"{name} at {n} records: the index and the scan disagree")
        rows.append(
            {
                "records": n, "query": name, "found": len(found),
                "indexed_ms": median_ms(indexed, repeats),
                "scan_ms": median_ms(scanned, max(3, repeats // 20)), "open_ms": open_ms,
            }
        )  # fmt: skip
    store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("data/bench/claims"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in track(sorted(args.records), description="record counts"):
            rows.extend(run(n, args.repeats, Path(tmp)))
    smallest = min(args.records)
    base = {r["query"]: r["indexed_ms"] for r in rows if r["records"] == smallest}
    for row in rows:
        row["ratio_to_smallest"] = round(row["indexed_ms"] / base[row["query"]], 3)
        print(", ".join(f"{k}={v}" for k, v in row.items()))
    with (args.out / "claims.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for query in base:
        mine = [r for r in rows if r["query"] == query]
        line = ax.plot([r["records"] for r in mine], [r["indexed_ms"] for r in mine], "o-",
                       label=f"{query}")[0]  # fmt: skip
        ax.plot([r["records"] for r in mine], [r["scan_ms"] for r in mine], "s--",
                color=line.get_color(), alpha=0.5)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("claim records on the node")
    ax.set_ylabel("ms per query")
    ax.set_title("Explorer claim queries: indexed (solid) vs full scan (dashed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "claims.png", dpi=120)
    print(f"wrote {args.out}/claims.csv and claims.png")


if __name__ == "__main__":
    main()
