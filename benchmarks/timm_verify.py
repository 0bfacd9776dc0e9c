"""Verification cost of timm models of several sizes (CPU), against each one's bare forward pass.

    .venv/bin/python benchmarks/timm_verify.py                        # 4 models, 64×64 inputs
    .venv/bin/python benchmarks/timm_verify.py --models resnet18 --size 128

Each model runs in a fresh process (so its peak memory is its own): a timm model (randomly
initialised: nothing is downloaded) watermarked for --epochs on the digits resized to --size
(`model train --arch`), its artefact and evidence in a temp store, then
- floor: one bare fp32 forward pass over the inputs verification feeds it (K = 100 triggers +
  P = 32 probes), median of --repeats;
- cold verification: a fresh `Verifier` on the stored files (hash, meta-device check, load,
  all three factors at precision `fast`), median of --repeats;
- peak RSS of the process, and the model's parameters and forward GFLOPs per input.
A watermarked model has confident trigger logits, so few rows need float64 (`float64_rows`);
the verdict does not change the work.
Writes CSV and a PNG to --out, and says which is the largest that fits a block interval.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MODELS = ["mobilenetv3_small_100", "efficientnet_b0", "resnet18", "resnet50"]


def measure(name: str, size: int, epochs: int, repeats: int, queue: Any) -> None:
    import torch

    from authchain.ml_service.artefact import load_artefact
    from authchain.ml_service.models import timm_models_allowed
    from authchain.ml_service.owner import train_timm
    from authchain.ml_service.registry import FilesystemStore
    from authchain.ml_service.schemas import VerifyRequest
    from authchain.ml_service.verifier import Verifier
    from authchain.ml_service.watermark.embed import EmbedSpec
    from authchain.ml_service.watermark.evidence import KeyMaterial, parse_evidence
    from authchain.ml_service.watermark.verify import compute_stats

    with timm_models_allowed([name]), tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        result = train_timm(
            b"\x01" * 32, Path(tmp) / "out", model_name=name, input_size=size, epochs=epochs,
            seed=0, spec=EmbedSpec(),
        )  # fmt: skip
        loaded = load_artefact(result.artefact)
        model = loaded.model
        store = FilesystemStore(Path(tmp) / "models", Path(tmp) / "evidence")
        aid, ev = result.aid, result.evidence_hash
        (store.model_root / f"{aid}.safetensors").write_bytes(result.artefact.read_bytes())
        (store.evidence_root / f"{ev}.json").write_bytes(result.evidence.read_bytes())
        request = VerifyRequest.model_validate({
            "aid": aid, "scheme_id": "multi_factor_v2", "evidence_hash": ev,
            "wm_profile": {"tau_input": 0.0, "tau_feat": 1.0, "logit_band_low": -0.05,
                           "logit_band_high": 0.05},
        })  # fmt: skip
        evidence = parse_evidence(result.evidence.read_bytes())
        key = KeyMaterial.from_evidence(evidence)
        inputs = torch.cat([key.trigger_inputs(), key.probe_inputs()]).float()

        def forward() -> None:
            with torch.no_grad():
                model(inputs)

        forward()
        floor = statistics.median(_times(forward, repeats))
        cold = statistics.median(_times(lambda: Verifier(store).check(request), repeats))
        exact_rows = compute_stats(model, evidence).exact_rows
        flops = _gflops(model, size)
    queue.put({
        "model": name, "input": size, "parameters_m": round(sum(p.numel() for p in
        model.parameters()) / 1e6, 2), "gflops_per_input": round(flops, 3),
        "forward_s": round(floor, 3), "verify_cold_s": round(cold, 3),
        "ratio_to_forward": round(cold / floor, 3), "float64_rows": exact_rows,
        "trigger_acc": result.stats.trigger_acc, "passes": result.passes,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    })  # fmt: skip


def _times(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _gflops(model: Any, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--size", type=int, default=64, help="input size (digits resized)")
    parser.add_argument("--epochs", type=int, default=2, help="watermarking epochs per model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-secs", type=float, default=5.0,
                        help="the block interval to fit (devnet block_time_secs)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("data/bench/timm"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    context = multiprocessing.get_context("spawn")
    for name in args.models:
        queue = context.Queue()
        proc = context.Process(
            target=measure, args=(name, args.size, args.epochs, args.repeats, queue)
        )
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(json.dumps(row), flush=True)
    with (args.out / "timm_verify.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # verification time against forward GFLOPs per input: a straight line through the models
    fits = [r["model"] for r in rows if r["verify_cold_s"] <= args.block_secs]
    if len(rows) >= 2:
        slope, intercept = np.polyfit(
            [r["gflops_per_input"] for r in rows], [r["verify_cold_s"] for r in rows], 1
        )
        budget = (args.block_secs - intercept) / slope
        print(f"verification ~ {intercept:.2f} s + {slope:.2f} s per GFLOP of one input's "
              f"forward pass: a {args.block_secs:g} s block interval fits up to ~{budget:.1f} "
              f"GFLOPs per input")  # fmt: skip
    print(f"verified within {args.block_secs:g} s: {', '.join(fits) or 'none'}")
    fig, ax = plt.subplots(figsize=(7, 3.4))
    xs = [r["gflops_per_input"] for r in rows]
    ax.scatter(xs, [r["verify_cold_s"] for r in rows], label="cold verification", zorder=3)
    ax.scatter(xs, [r["forward_s"] for r in rows], marker="s", label="bare fp32 forward")
    for r in rows:
        where = (r["gflops_per_input"], r["verify_cold_s"])
        label = f"{r['model']} ({r['parameters_m']}M)"
        ax.annotate(label, where, fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.axhline(args.block_secs, color="#c44e52", linestyle="--", label="block interval")
    ax.set_xlabel(f"GFLOPs per {args.size}×{args.size} input")
    ax.set_ylabel("seconds (132 inputs)")
    ax.set_title("Verifying timm models on 2 CPU cores")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "timm_verify.png", dpi=120)
    print(f"wrote {args.out}/timm_verify.csv and .png")


if __name__ == "__main__":
    main()
