"""Whatever `authchain devnet`, `demo` and `testnet` start dies with them, also when they are
SIGKILLed (as `subprocess.run(timeout=...)` and the OOM killer do): no ML service, node,
gateway or cometbft is left orphaned."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from authchain.devnet import Process, free_port
from tests.support.procs import REPO


def children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(line) for line in found.stdout.split()}


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def started(tmp_path: Path, args: list[str], ready: str, count: int) -> tuple[Process, set[int]]:
    """`authchain <args>`, once its log says `ready` and it has `count` children."""
    proc = Process(args, tmp_path / "parent.log", cwd=REPO).start()
    assert proc.popen is not None
    pid = proc.popen.pid
    proc.wait_until(
        lambda: ready in proc.log() and len(children(pid)) >= count, 180,
        f"say {ready!r} with {count} children",
    )  # fmt: skip
    return proc, children(pid)


@pytest.mark.parametrize(
    ("args", "ready", "count"),
    [
        (["devnet", "--free-ports", "--block-time", "0.5", "--data-dir", "{dir}"],
         "devnet running", 3),
        (["demo", "--tiny", "--free-ports", "--data-dir", "{dir}"], "1. train a watermarked", 3),
        (["testnet", "--validators", "1", "--first-ip", "127.0.0.47", "--dir", "{dir}",
          "--gateway-port", "{port}"], "validators up 1/1", 4),
    ],
    ids=["devnet", "demo", "testnet"],
)  # fmt: skip
def test_a_sigkilled_parent_leaves_no_child_behind(
    tmp_path: Path, args: list[str], ready: str, count: int
) -> None:
    args = [a.format(dir=tmp_path / "data", port=free_port()) for a in args]
    proc, kids = started(tmp_path, args, ready, count)
    assert len(kids) == count and all(alive(k) for k in kids)
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 60
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [k for k in kids if alive(k)]
    for k in left:  # leave nothing behind, even when failing
        subprocess.run(["kill", "-KILL", str(k)], check=False)
    assert left == [], f"children left running after the parent's SIGKILL: {left}"
