"""Verification latency against the bare forward pass of the same model on the same inputs.

    .venv/bin/python benchmarks/verify.py            # the seed's SmallResNet (trains ~2 min)
    .venv/bin/python benchmarks/verify.py --tiny     # a tiny one (seconds)

The floor is one float32 forward pass over exactly the inputs verification feeds the model
(K trigger + P probe images), measured in the same run. Reported, as ratios to that floor:
- cold:    a fresh verifier: read + hash both files, rebuild the model, compute all factors;
- factors: the three factors alone (float64 forward pass, projection, comparisons);
- cached:  a repeated request (statistics cached; thresholds re-applied).
Each figure is the median of --repeats runs. No timing is asserted anywhere; this only prints.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.cli import train_command
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"training a {'tiny' if args.tiny else 'full'} watermarked SmallResNet ...")
        result = train_command(
            b"\x01" * 32, root / "out", tiny=args.tiny, epochs=None, seed=0, watermark=True,
            base=None, spec=EmbedSpec(),
        )  # fmt: skip
        store = FilesystemStore(root / "models", root / "evidence")
        aid, ev = result["aid"], result["evidence_hash"]
        (store.model_root / f"{aid}.safetensors").write_bytes(Path(result["artefact"]).read_bytes())
        (store.evidence_root / f"{ev}.json").write_bytes(Path(result["evidence"]).read_bytes())
        request = VerifyRequest.model_validate(
            {"aid": aid, "scheme_id": "multi_factor_v1", "evidence_hash": ev, "owner": "01" * 32,
             "wm_profile": result["wm_profile"]}
        )  # fmt: skip

        evidence = parse_evidence(Path(result["evidence"]).read_bytes())
        model = load_artefact(Path(result["artefact"])).model
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
        warm = Verifier(store, device=args.device)
        outcome = warm.check(request)
        cached = median_seconds(lambda: warm.check(request), args.repeats)

    n_params = result["parameters"]
    print(f"model: SmallResNet{' (tiny)' if args.tiny else ''}, {n_params:,} parameters; "
          f"{len(inputs)} inputs; device {device}; torch threads {torch.get_num_threads()}; "
          f"verdict ok={outcome.ok}")  # fmt: skip
    print(f"{'measure':<34}{'median ms':>12}{'x floor':>10}")
    rows = [
        ("floor: bare forward pass (fp32)", floor),
        ("verify, cold (hash+load+factors)", cold),
        ("three factors only (fp64)", factors),
        ("verify, cached statistics", cached),
    ]
    for name, seconds in rows:
        print(f"{name:<34}{seconds * 1000:>12.3f}{seconds / floor:>10.2f}")


if __name__ == "__main__":
    main()
