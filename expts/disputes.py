"""Spare watermarks against the thief who reads the chain (issue 22).

    .venv/bin/python expts/disputes.py                  # 5 owners, ~15 min on 2 CPU cores
    .venv/bin/python expts/disputes.py --owners 1 --quick

Each owner model is the tiny SmallResNet trained as `authchain model train --tiny` does it by
default: the primary watermark and three spares, 12 epochs. The thief holds the primary
evidence (as every validator operator does) and runs the attack suite's informed removal
(`attacks.informed_removal`: the primary's triggers unlearned and its signature pulled to the
opposite bits, at lr 3e-3 for 1, 3 and 5 epochs), then adds his own watermark as `model train
--from` does (2 epochs at lr 2e-3, expts/soundness.py's THIEF_WATERMARK). For every copy:
task accuracy, whether registration catches it (the primary at the derivative floor), how
many spares it still carries, and so whether a dispute catches it. A copy counts only while
its accuracy stays within 5 points of the stolen model's (as in expts/soundness.py).

It also times a dispute's verdict against a plain verification of the same owner's claim on
the ML service's own `Verifier` (fresh caches each time, median of 5): the dispute reads two
models (the earlier and the suspect) where a registration reads one.

Writes to --out: disputes.csv, disputes.md (the table in docs/SECURITY.md), summary.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import blake3
import torch

from authchain.floors import DEFAULT_FLOORS
from authchain.ml_service import attacks
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.data import load_digits_split
from authchain.ml_service.owner import train_model
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import DisputeRequest, VerifyRequest
from authchain.ml_service.train import TrainConfig, evaluate_accuracy, train
from authchain.ml_service.verifier import Verifier
from authchain.ml_service.watermark.embed import EmbedSpec, new_key_material
from authchain.ml_service.watermark.evidence import parse_evidence
from authchain.ml_service.watermark.verify import compute_carry_stats
from authchain.wire import FloorsJson, WmProfileJson

THIEF_WATERMARK = TrainConfig(epochs=2, lr=2e-3, seed=8)
ACCURACY_SLACK = 0.05
REMOVAL_EPOCHS = (1, 3, 5)


def owner_bytes(o: int) -> bytes:
    return bytes([0x70 + o]) * 32


def run_owner(args: tuple[int, Path, tuple[int, ...]]) -> list[dict[str, Any]]:
    o, root, removal_epochs = args
    torch.set_num_threads(1)
    data = load_digits_split()
    report = train_model(
        owner_bytes(o), root / f"owner-{o}", tiny=True, epochs=None, seed=4000 + o,
        watermark=True, base=None, spec=EmbedSpec(), spares=3,
        spare_secret=bytes([0x90 + o]) * 32, key_seed=bytes([0xA0 + o]) * 32,
    )  # fmt: skip
    loaded = load_artefact(report.artefact)
    primary = parse_evidence(report.evidence.read_bytes())
    spares = [parse_evidence(s.evidence.read_bytes()) for s in report.spares]
    stolen_accuracy = report.test_accuracy or 0.0
    print(f"owner {o}: accuracy {stolen_accuracy:.3f}, spares pass the claim floors: "
          f"{[s.passes for s in report.spares]}", flush=True)  # fmt: skip
    rows = []
    for epochs in removal_epochs:
        plan = attacks.FineTune(epochs, 3e-3, seed=50 * o + epochs)
        removed, _ = attacks.informed_removal(loaded.model, primary, data[0], plan)
        key = new_key_material(bytes([0xD0 + o]) * 32, loaded.arch, 10, EmbedSpec(),
                               bytes([0xE0 + o, epochs]) * 16, removed)  # fmt: skip
        copy = train(removed, data[0], THIEF_WATERMARK, key=key, spec=EmbedSpec())
        accuracy = evaluate_accuracy(copy, data[1])
        carries = compute_carry_stats(copy, [primary, *spares], "cpu", "float64")
        floor = DEFAULT_FLOORS.derivative_p_log2
        spares_carried = [c.carries(floor) for c in carries[1:]]
        owner_spares_pass = [s.passes for s in report.spares]
        rows.append({
            "owner": o, "removal_epochs": epochs, "stolen_accuracy": round(stolen_accuracy, 4),
            "test_accuracy": round(accuracy, 4),
            "counted": accuracy >= stolen_accuracy - ACCURACY_SLACK,
            "log2_p_primary": round(carries[0].log2_p_value(), 1),
            "caught_at_registration": carries[0].carries(floor),
            "log2_p_spares": ";".join(f"{c.log2_p_value():.1f}" for c in carries[1:]),
            "spares_carried": sum(spares_carried),
            "caught_by_dispute": any(
                hit and ok for hit, ok in zip(spares_carried, owner_spares_pass, strict=True)
            ),
        })  # fmt: skip
        print(f"owner {o}, removal {epochs} ep: accuracy {accuracy:.3f}, primary "
              f"2^{rows[-1]['log2_p_primary']}, spares carried {sum(spares_carried)}/3 "
              f"({rows[-1]['log2_p_spares']})", flush=True)  # fmt: skip
        if epochs == removal_epochs[-1]:
            rows[-1]["timing"] = time_dispute(report, copy, loaded, root / f"timing-{o}")
    return rows


def time_dispute(report: Any, copy: torch.nn.Module, loaded: Any, root: Path) -> dict[str, float]:
    """Median seconds of a plain verification of the owner's claim and of a dispute's verdict
    (the earlier model with the spare, the suspect's carry), each on a fresh Verifier."""
    root.mkdir(parents=True, exist_ok=True)
    suspect = encode_artefact(copy, loaded.arch, loaded.config)
    suspect_aid = blake3.blake3(suspect).hexdigest()
    (root / "models").mkdir(exist_ok=True)
    (root / "evidence").mkdir(exist_ok=True)
    (root / "models" / f"{report.aid}.safetensors").write_bytes(report.artefact.read_bytes())
    (root / "models" / f"{suspect_aid}.safetensors").write_bytes(suspect)
    for path, digest in [(report.evidence, report.evidence_hash),
                         (report.spares[0].evidence, report.spares[0].evidence_hash)]:  # fmt: skip
        (root / "evidence" / f"{digest}.json").write_bytes(path.read_bytes())
    floors = FloorsJson(**asdict(DEFAULT_FLOORS))
    plain = VerifyRequest(
        aid=report.aid, scheme_id="multi_factor_v2", evidence_hash=report.evidence_hash,
        wm_profile=WmProfileJson(**asdict(report.wm_profile)), owner=report.owner, floors=floors,
    )  # fmt: skip
    dispute = DisputeRequest(
        owner=report.owner, earlier_aid=report.aid, suspect_aid=suspect_aid,
        spare_evidence_hash=report.spares[0].evidence_hash, floors=floors,
    )  # fmt: skip

    def fresh() -> Verifier:
        return Verifier(FilesystemStore(root / "models", root / "evidence"))

    def seconds(job: Any) -> float:
        times = []
        for _ in range(5):
            verifier = fresh()
            started = time.perf_counter()
            job(verifier)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    verify_s = seconds(lambda v: v.check(plain))
    dispute_s = seconds(lambda v: v.check_dispute(dispute))
    assert fresh().check_dispute(dispute).ok is not None
    return {"verify_s": round(verify_s, 4), "dispute_s": round(dispute_s, 4),
            "ratio": round(dispute_s / verify_s, 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/expts/disputes"))
    parser.add_argument("--owners", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--quick", action="store_true", help="one removal strength (3 epochs)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    epochs = (3,) if args.quick else REMOVAL_EPOCHS
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.workers) as pool:
        jobs = [(o, Path(tmp), epochs) for o in range(args.owners)]
        rows = [row for rows in pool.map(run_owner, jobs) for row in rows]
    timings = [row.pop("timing") for row in rows if "timing" in row]
    with (args.out / "disputes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| informed removal | copies counted | accuracy (mean) | caught at registration "
        "| spares carried (of 3, mean) | caught by a dispute |",
        "|---|---|---|---|---|---|",
    ]
    for e in epochs:
        sel = [r for r in rows if r["removal_epochs"] == e]
        counted = [r for r in sel if r["counted"]]
        lines.append(
            f"| {e} ep | {len(counted)}/{len(sel)} | "
            f"{statistics.mean(r['test_accuracy'] for r in sel):.3f} | "
            f"{sum(r['caught_at_registration'] for r in counted)}/{len(counted)} | "
            f"{statistics.mean(r['spares_carried'] for r in sel):.1f} | "
            f"{sum(r['caught_by_dispute'] for r in counted)}/{len(counted)} |"
        )
    (args.out / "disputes.md").write_text("\n".join(lines) + "\n")
    counted = [r for r in rows if r["counted"]]
    summary = {
        "owners": args.owners, "copies": len(rows), "counted": len(counted),
        "caught_by_dispute": sum(r["caught_by_dispute"] for r in counted),
        "caught_at_registration": sum(r["caught_at_registration"] for r in counted),
        "dispute_over_verify": [t["ratio"] for t in timings],
        "dispute_over_verify_median": statistics.median(t["ratio"] for t in timings),
        "seconds": round(time.perf_counter() - started),
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(lines))
    print(json.dumps(summary, indent=2))
    return 0 if summary["caught_by_dispute"] == summary["counted"] else 1


if __name__ == "__main__":
    sys.exit(main())
