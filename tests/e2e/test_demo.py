"""`authchain demo`, the main job behind `make demo`, run as a user runs it (tiny model, free
ports): it trains and registers a watermarked model, sees the clean model, the stolen model's
forged claim and the watermark overwrite rejected for the right reasons, and stops everything
it started."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_the_demo_runs_its_scenario_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "authchain", "demo", "--tiny", "--free-ports", "--data-dir",
         str(data)],
        capture_output=True, text=True, timeout=540, cwd=REPO,
    )  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-4000:]
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
    assert "demo finished as expected" in said
    assert "stopped: gateway exit 0, node exit 0, ml-service exit 0" in said
    assert (data / "owner.key").exists() and any((data / "logs").iterdir())
