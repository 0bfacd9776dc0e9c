"""The soundness experiment and the derivative and claims benchmarks run end to end (quick
settings), so the figures in the README can always be made again."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.support.models import ModelCache

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip


def test_soundness_quick_run_meets_its_targets(tmp_path: Path, model_cache: ModelCache) -> None:
    """Its rows are kept beside the trained models: a second run with the same code redraws
    only (a change to the ML code or the script computes them again)."""
    cache = str(model_cache.root)
    result = run("expts/soundness.py", "--quick", "--out", str(tmp_path), "--cache", cache)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["null_pairs"] == 30 and summary["null_false_accepts"] == 0
    assert summary["null_false_flags"] == 0 and summary["true_accept_rate"] == 1.0
    assert (
        summary["precision_checked"] > 30 and summary["precision_mismatches_fast_vs_float64"] == 0
    )
    rows = list(csv.DictReader((tmp_path / "attacks.csv").open()))
    assert {"rewrite", "rewrites + fine-tune", "prune"} <= {row["family"] for row in rows}
    rewrites = [row for row in rows if row["family"] == "rewrite"]
    assert rewrites and all(row["caught"] == "True" for row in rewrites)
    assert all(float(row["compute"]) > 0 for row in rows)  # the thief's watermark costs
    assert "| rewrite | all |" in (tmp_path / "attacks.md").read_text()
    for png in ("null_pvalues.png", "attacks.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")


def test_derivative_benchmark_runs(tmp_path: Path) -> None:
    result = run("benchmarks/derivative.py", "--counts", "1", "1000", "--repeats", "1",
                 "--evidence-files", "4", "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "derivative.csv").open()))
    assert [int(r["earlier"]) for r in rows] == [0, 1, 1000]
    assert [int(r["checked"]) for r in rows] == [0, 1, 1]  # one, however many are registered
    assert [r["parent_found"] for r in rows[1:]] == ["True", "True"]  # ... and the copy
    assert all(float(r["ratio"]) > 0 for r in rows)  # figures, not a timing claim
    assert (tmp_path / "derivative.png").read_bytes().startswith(b"\x89PNG")


def test_claims_benchmark_runs_and_the_index_agrees_with_a_scan(tmp_path: Path) -> None:
    result = run("benchmarks/claims.py", "--records", "300", "3000", "--repeats", "3",
                 "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "claims.csv").open()))
    assert {(row["records"], row["query"]) for row in rows} == {
        (n, q) for n in ("300", "3000") for q in ("overview", "model", "lineage_step", "account")
    }
    assert (tmp_path / "claims.png").read_bytes().startswith(b"\x89PNG")
