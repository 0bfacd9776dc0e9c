"""`authchain demo`, the main job behind `make demo`, run as a user runs it (tiny model, free
ports): it trains and registers a watermarked model, sees the clean model, the stolen model's
forged claim and the watermark overwrite rejected for the right reasons, and stops everything
it started.

There is no deadline for the whole run, which depends on the machine: the test follows the
demo's output line by line, and fails on a step that never comes, or when the demo says
nothing for `STALL_SECS`."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.devnet import REPO

STALL_SECS = 240.0
"""Longest silence allowed: the tiny model's training, the slowest step, prints its progress
bar when it ends (well under a minute here)."""
STEPS = (
    "1. train a watermarked SmallResNet",
    "2. upload and register it",
    "3. an unwatermarked model",
    "4. a thief's forged claim",
    "5. a watermark overwrite",
    "6. chain metrics",
    "demo finished as expected",
    "stopped: gateway exit 0, node exit 0, ml-service exit 0",
)


def follow(command: list[str]) -> tuple[int, str]:
    """Run `command` and return its exit code and output (stdout and stderr together); fail
    when a step is skipped or the output stalls, then stop it."""
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    said: list[str] = []
    steps = list(STEPS)
    try:
        while True:
            try:
                line = lines.get(timeout=STALL_SECS)
            except queue.Empty:
                raise AssertionError(
                    f"the demo said nothing for {STALL_SECS:.0f}s, waiting for "
                    f"{steps[0] if steps else 'its exit'!r}:\n{''.join(said[-40:])}"
                ) from None
            if line is None:
                break
            said.append(line)
            later = [s for s in steps[1:] if s in line]
            assert not later, f"{later[0]!r} came before {steps[0]!r}:\n{''.join(said[-40:])}"
            if steps and steps[0] in line:
                steps.pop(0)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: the demo stops its children (and they die with it)
            proc.wait(timeout=60)
    output = "".join(said)
    assert steps == [], f"the demo ended before {steps[0]!r}:\n{output[-4000:]}"
    return code, output


def test_the_demo_runs_its_scenario_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    code, said = follow(
        [sys.executable, "-m", "authchain", "demo", "--tiny", "--free-ports", "--data-dir",
         str(data)]
    )  # fmt: skip
    assert code == 0, said[-4000:]
    committed = re.search(
        r"committed in block (\d+) \(([0-9a-f]{64}); in the explorer:\s+(\S+)/tx/", said
    )
    assert committed, said[-4000:]
    assert "127.0.0.1:8081" not in committed.group(3)  # --free-ports: not the seed's gateway
    assert "verified against tx_root" in said
    rejected = re.findall(r"tx [0-9a-f]{64}: rejected —\s+(\S+)", said)
    assert len(rejected) == 3, said[-4000:]  # the clean model, the forged claim, the overwrite
    assert "trigger_p_above_floor" in rejected[0] and "trigger_p_above_floor" in rejected[1]
    assert rejected[2] == "carries_registered_watermark"
    assert (data / "owner.key").exists() and any((data / "logs").iterdir())
