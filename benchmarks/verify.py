"""Verification latency against the bare forward pass of the same model on the same inputs.

    .venv/bin/python benchmarks/verify.py            # the seed's SmallResNet (trains ~2 min)
    .venv/bin/python benchmarks/verify.py --tiny     # a tiny one (seconds)

The floor is one float32 forward pass over exactly the inputs verification feeds the model
(K trigger + P probe images), measured in the same run. Reported, as ratios to that floor:
- cold:    a fresh verifier: read + hash both files, rebuild the model, compute all factors
           (precision `fast`, and `float64` as before);
- factors: the three factors alone: one fp32 pass plus float64 for the rows fp32 cannot decide
           (`fast`), and everything in float64;
- cached:  a repeated request (statistics cached; thresholds re-applied).
Each figure is the median of --repeats runs. No timing is asserted anywhere; this only prints.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.owner import train_model
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import VerifyRequest
from authchain.ml_service.verifier import Verifier
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.evidence import KeyMaterial, parse_evidence
from authchain.ml_service.watermark.verify import compute_stats

REPO = Path(__file__).resolve().parent.parent


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="benchmark the tiny SmallResNet")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--out", type=Path, default=Path("data/bench/verify"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"training a {'tiny' if args.tiny else 'full'} watermarked SmallResNet ...")
        result = train_model(
            b"\x01" * 32, root / "out", tiny=args.tiny, epochs=None, seed=0, watermark=True,
            base=None, spec=EmbedSpec(),
        )  # fmt: skip
        store = FilesystemStore(root / "models", root / "evidence")
        aid, ev = result.aid, result.evidence_hash
        (store.model_root / f"{aid}.safetensors").write_bytes(result.artefact.read_bytes())
        (store.evidence_root / f"{ev}.json").write_bytes(result.evidence.read_bytes())
        request = VerifyRequest.model_validate(
            {"aid": aid, "scheme_id": "multi_factor_v2", "evidence_hash": ev, "owner": "01" * 32,
             "wm_profile": result.to_json()["wm_profile"]}
        )  # fmt: skip

        evidence = parse_evidence(result.evidence.read_bytes())
        model = load_artefact(result.artefact).model
        key = KeyMaterial.from_evidence(evidence)
        inputs = torch.cat([key.trigger_inputs(), key.probe_inputs()]).to(torch.float32)
        device = Verifier(store, device=args.device).device
        model, inputs = model.to(device), inputs.to(device)

        def forward() -> None:
            with torch.no_grad():
                model(inputs)
            if device == "cuda":
                torch.cuda.synchronize()

        forward()  # warm-up
        floor = median_seconds(forward, args.repeats)
        cold = median_seconds(
            lambda: Verifier(store, device=args.device).check(request), args.repeats
        )
        factors = median_seconds(lambda: compute_stats(model, evidence, device), args.repeats)
        factors64 = median_seconds(
            lambda: compute_stats(model, evidence, device, precision="float64"), args.repeats
        )
        exact_rows = compute_stats(model, evidence, device).exact_rows
        cold64 = median_seconds(
            lambda: Verifier(store, device=args.device, precision="float64").check(request),
            args.repeats,
        )
        warm = Verifier(store, device=args.device)
        outcome = warm.check(request)
        cached = median_seconds(lambda: warm.check(request), args.repeats)

    n_params = result.parameters
    print(f"model: SmallResNet{' (tiny)' if args.tiny else ''}, {n_params:,} parameters; "
          f"{len(inputs)} inputs; device {device}; torch threads {torch.get_num_threads()}; "
          f"verdict ok={outcome.ok}")  # fmt: skip
    print(f"{'measure':<40}{'median ms':>12}{'x floor':>10}")
    rows = [
        ("floor: bare forward pass (fp32)", floor),
        ("verify, cold (hash+load+factors)", cold),
        ("verify, cold, all float64 (before)", cold64),
        (f"three factors (fp32 + {exact_rows} float64 rows)", factors),
        ("three factors, all float64", factors64),
        ("verify, cached statistics", cached),
    ]
    for name, seconds in rows:
        print(f"{name:<40}{seconds * 1000:>12.3f}{seconds / floor:>10.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"verify-{'tiny' if args.tiny else 'full'}-{device}"
    with stem.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["measure", "median_ms", "x_floor", "parameters", "inputs", "threads"])
        for name, seconds in rows:
            writer.writerow([name, round(seconds * 1000, 3), round(seconds / floor, 3), n_params,
                             len(inputs), torch.get_num_threads()])  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([n for n, _ in rows][::-1], [t / floor for _, t in rows][::-1], color="#4c72b0")
    ax.axvline(1.5, color="#c44e52", linestyle="--", label="1.5x goal")
    ax.set_xlabel("x bare fp32 forward pass")
    ax.set_title(f"Verification cost, SmallResNet{' (tiny)' if args.tiny else ''}, {device}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print(f"wrote {stem}.csv and .png")


if __name__ == "__main__":
    main()
