"""Load on a CometBFT network: pre-made txs sent straight to CometBFT's RPC with many calls in
flight (`replay`, a small Go client in tools/replay), and the blocks that came of them.

`benchmarks/cometbft.py` sends the same way to an authchain testnet and to CometBFT's built-in
kvstore, so their ratio compares the applications, not the load generator; the flood tests
play a stranger with it. Txs go out in the order given, at most `concurrency` at a time: a
sender's txs must be at least `concurrency` apart in that order to arrive in nonce order
(`round_robin` arranges it), because a network that admits only a sender's next nonce
refuses the one that overtook its predecessor. Tx i goes to `urls[i % len(urls)]`: with
several validators, a sender count divisible by their number sends each sender's txs to one
of them (a tx that reached another validator first would be refused there for the same reason).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from authchain.testnet import comet_rpc


@dataclass(frozen=True, slots=True)
class Sent:
    """What CometBFT answered to one tx: `code` is CheckTx's (None: refused before the app,
    e.g. "mempool is full", or the call failed; `error` says which)."""

    code: int | None
    log: str = ""
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.code == 0


def round_robin(per_sender: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Each sender's txs (in nonce order) interleaved: every sender's first, then every
    sender's second, ..."""
    return [tx for row in itertools.zip_longest(*per_sender) for tx in row if tx is not None]


REPLAY_ENV = "AUTHCHAIN_REPLAY"


def find_replay(repo: Path) -> Path:
    """The replay binary (`tools/replay`, built by `make replay` into bin/): $AUTHCHAIN_REPLAY
    or the repo's bin/."""
    for candidate in (os.environ.get(REPLAY_ENV), repo / "bin" / "replay"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        f"no replay binary: run `make replay` (go install ./tools/replay into bin/) or set "
        f"{REPLAY_ENV}"
    )


@dataclass(frozen=True, slots=True)
class Replayed:
    """What one replay run sent and got back."""

    results: list[Sent]
    """One per tx sent, in sending order (a run stopped by `seconds` sends fewer)."""

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.results)


def replay(
    urls: Sequence[str],
    txs: Iterable[bytes],
    *,
    repo: Path,
    concurrency: int = 32,
    method: str = "broadcast_tx_sync",
    seconds: float = 0.0,
    batch: int = 0,
) -> Replayed:
    """Send `txs` in order to CometBFT RPC endpoints `urls` (round robin), `concurrency`
    calls in flight, with the Go replay client; stop sending after `seconds` (0: send all).
    With `batch`, `urls` are tx intakes (`POST /txs/batch`), each call carrying that many."""
    with tempfile.TemporaryDirectory(prefix="authchain-replay-") as tmp:
        path, results = Path(tmp) / "txs.bin", Path(tmp) / "results.jsonl"
        with path.open("wb") as fh:
            for tx in txs:
                fh.write(_uvarint(len(tx)) + tx)
        command = [
            str(find_replay(repo)), "-in", str(path), "-concurrency", str(concurrency),
            "-method", method, "-seconds", str(seconds), "-results", str(results),
            "-batch", str(batch),
        ]  # fmt: skip
        for url in urls:
            command += ["-url", url]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"replay failed ({done.returncode}): {done.stderr.strip()}")
        rows = [json.loads(line) for line in results.read_text().splitlines()]
    rows.sort(key=lambda row: row["i"])
    sent = [
        Sent(row["code"], log=row.get("log", "")) if row["code"] >= 0
        else Sent(None, error=row.get("log", ""))
        for row in rows
    ]  # fmt: skip
    return Replayed(sent)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --- what came of it --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockMeta:
    height: int
    time: float
    """The header's time (seconds since the epoch): BFT time, the median of the validators'
    precommit clocks."""
    txs: int


def parse_time(value: str) -> float:
    """CometBFT's RFC 3339 time with nanoseconds -> seconds since the epoch."""
    head, _, frac = value.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float(f"0.{frac}") if frac else 0.0)


def blocks(rpc_url: str, first: int, last: int) -> list[BlockMeta]:
    """The blocks `first..last` as CometBFT's `blockchain` call lists them (20 a call)."""
    out: list[BlockMeta] = []
    for top in range(last, first - 1, -20):
        bottom = max(first, top - 19)
        found = comet_rpc(rpc_url, "blockchain", minHeight=str(bottom), maxHeight=str(top))
        for meta in found["block_metas"]:
            header = meta["header"]
            out.append(
                BlockMeta(int(header["height"]), parse_time(header["time"]), int(meta["num_txs"]))
            )
    return sorted(out, key=lambda b: b.height)


def largest_gap(metas: Sequence[BlockMeta]) -> float:
    """The longest time between consecutive blocks (0 for fewer than two). Block 1's time is
    genesis_time, written before the network started, not a commit's: the gap after it is
    not one."""
    pairs = itertools.pairwise(metas)
    return max((b.time - a.time for a, b in pairs if a.height > 1), default=0.0)


def mempool_size(rpc_url: str) -> int:
    return int(comet_rpc(rpc_url, "num_unconfirmed_txs")["n_txs"])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process and its descendants have used so far: those alive
    (an app's signature workers) and those it has waited for (Linux's /proc)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    ticks, todo = 0, [pid]
    while todo:
        this = todo.pop()
        if this in stats:
            ticks += sum(int(f) for f in stats[this][11:15])  # utime, stime, cutime, cstime
            todo += children.get(this, [])
    return ticks / os.sysconf("SC_CLK_TCK")
