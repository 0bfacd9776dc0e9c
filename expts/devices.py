"""Do validators on different hardware reach the same verdict? CPU at 1 and N threads, and CUDA,
each at precision `fast` and `float64`, on the same claims.

    .venv/bin/python expts/devices.py prepare data/devices       # here, on the CPU (~2 min
                                                                 # with a warm test model cache)
    PYTHONPATH=src:. python3 expts/devices.py check data/devices --out OUT   # on a GPU machine

`prepare` writes the claims: each a model file, the evidence it is verified against, a
`wm_profile` and the earlier registrations (priors) the derivative check reads. The models:
- honest ones: the tiny and the full SmallResNet, an owner's own fine-tune, four timm
  families (ResNet, EfficientNet, ViT, ConvNeXt, timm's test configs);
- the null: an unwatermarked model against an owner's evidence, and against its own;
- a thief's copies of the owner's model: every function-preserving rewrite, pruning at 30-90%,
  int8 and float16, keyless fine-tunes at lr 1e-3 to 1e-2 (with noise too), fine-pruning,
  informed removal, distillation, and an overwrite with the thief's own watermark;
- models built so that fp32 alone gets the verdict wrong (`tests/support/precision.py`), and a
  logit statistic 1e-7 either side of its band's edge.

`check` verifies every claim in every configuration and compares what the verdict rests on
(the reason, the trigger hits, the signature bits, each prior's trigger hits, bits and carry
decision) with the CPU float64 single-thread reference. It writes `devices.json` (every
result) and `devices.md` (the tables: agreement, and the latency of the fast path against a
bare fp32 forward pass on each device), and exits 1 on any disagreement. Nothing here is
timed as a pass or fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "src"):  # run from anywhere, with or without the package installed
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from tests.support.precision import Amplifier, NearTie, rebuilt, with_own_reference  # noqa: E402

from authchain.floors import DEFAULT_FLOORS  # noqa: E402
from authchain.ml_service.artefact import load_artefact  # noqa: E402
from authchain.ml_service.models import SmallResNet, SmallResNetConfig  # noqa: E402
from authchain.ml_service.models.timm_arch import timm_models_allowed  # noqa: E402
from authchain.ml_service.watermark.evidence import (  # noqa: E402
    Evidence,
    KeyMaterial,
    parse_evidence,
)
from authchain.ml_service.watermark.verify import (  # noqa: E402
    Thresholds,
    compute_stats,
    compute_stats_and_carry,
    decide,
)

TIMM = ["test_resnet", "test_efficientnet", "test_vit", "test_convnext"]
SEED_PROFILE = (0.9, 0.2, -0.05, 0.05)
FORWARDS: dict[str, type[SmallResNet]] = {"near_tie": NearTie, "amplifier": Amplifier}


@dataclass(frozen=True)
class Claim:
    name: str
    group: str
    model: str
    """The model file, relative to the cases folder."""
    evidence: str
    profile: tuple[float, float, float, float]
    priors: list[str] = field(default_factory=list)
    forward: str = "plain"
    """`plain`, or a `tests/support/precision.py` model run on the model file's weights."""


# --- prepare (here, on the CPU) ----------------------------------------------------------------


def prepare(root: Path) -> None:
    from tests.support.models import (
        OWNER,
        ModelCache,
        TrainedModel,
        train_clean,
        train_overwrite,
        train_own_finetune,
        train_timm_test_model,
        train_watermarked,
    )

    from authchain.ml_service import attacks
    from authchain.ml_service.artefact import encode_artefact
    from authchain.ml_service.data import load_digits_split
    from authchain.ml_service.models import get_architecture
    from authchain.ml_service.owner import train_model
    from authchain.ml_service.watermark.embed import EmbedSpec

    models = ModelCache(REPO / ".pytest_cache" / "d" / "authchain-models")
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)

    def keep(trained: TrainedModel) -> tuple[str, str]:
        model, ev = f"files/{trained.aid}.safetensors", f"files/{trained.evidence_hash}.json"
        (root / model).write_bytes(trained.artefact_bytes)
        (root / ev).write_bytes(trained.evidence_bytes)
        return model, ev

    def keep_evidence(evidence: Evidence, name: str) -> str:
        (root / f"files/{name}.json").write_bytes(evidence.to_bytes())
        return f"files/{name}.json"

    def full_model(out: Path) -> Any:
        return train_model(
            OWNER, out, tiny=False, epochs=3, seed=0, watermark=True, base=None,
            spec=EmbedSpec(), key_seed=b"\x09" * 32,
        )  # fmt: skip

    print("models: from the test cache, or trained once ...", flush=True)
    owner, clean = train_watermarked(models), train_clean(models)
    overwrite, own = train_overwrite(models, owner), train_own_finetune(models, owner)
    full = models.get("devices-full", full_model, 3)
    timm = {name: train_timm_test_model(models, name, OWNER) for name in TIMM}

    (om, oe), (cm, ce) = keep(owner), keep(clean)
    claims = [
        Claim("tiny SmallResNet", "honest", om, oe, SEED_PROFILE),
        Claim("full SmallResNet", "honest", *keep(full), SEED_PROFILE),
        Claim("owner's own fine-tune", "honest", *keep(own), SEED_PROFILE, [oe, ce]),
        Claim("thief's overwrite (tool's)", "thief", *keep(overwrite), SEED_PROFILE, [oe, ce]),
        Claim("clean vs the owner's evidence", "null", cm, oe, SEED_PROFILE, [oe]),
        Claim("clean vs its own evidence", "null", cm, ce, SEED_PROFILE, [oe]),
    ]
    timm_evidence = {name: keep(t) for name, t in timm.items()}
    for name, t in timm.items():
        assert t.result.wm_profile is not None, f"{name} does not pass the floors"
        p = t.result.wm_profile
        priors = [ev for other, (_, ev) in timm_evidence.items() if other != name]
        claims.append(
            Claim(f"timm {name}", "timm", *timm_evidence[name],
                  (p.tau_input, p.tau_feat, p.logit_band_low, p.logit_band_high), priors)
        )  # fmt: skip

    stolen = load_artefact(owner.artefact).model
    arch, config = get_architecture("small_resnet"), SmallResNetConfig.tiny()
    evidence = parse_evidence(owner.evidence_bytes)
    data, _ = load_digits_split()

    def trained(run: Callable[..., tuple[nn.Module, int]], *args: Any) -> Callable[[], nn.Module]:
        return lambda: run(*args)[0]  # the copy, without the examples it took

    def rng() -> torch.Generator:
        return torch.Generator().manual_seed(3)

    grid: list[tuple[str, Callable[[], nn.Module]]] = [
        (f"rewrite {name}", partial(attacks.REWRITES[name], stolen, rng()))
        for name in sorted(attacks.REWRITES)
    ]
    grid += [(f"prune {f:.0%}", partial(attacks.prune, stolen, f)) for f in (0.3, 0.6, 0.9)]
    grid.append(("quantize int8", partial(attacks.quantize_int8, stolen)))
    for lr, epochs, noise in ((1e-3, 2, False), (1e-2, 2, False), (3e-3, 2, True)):
        plan = attacks.FineTune(epochs, lr, noise, seed=3)
        label = f"rewrites + fine-tune lr {lr:g}, {epochs} ep{' + noise' if noise else ''}"
        rewritten = attacks.all_rewrites(stolen, rng())
        grid.append((label, trained(attacks.fine_tune, rewritten, data, plan)))
    plan = attacks.FineTune(2, 3e-3, seed=3)
    grid.append(("fine-prune 60%, 2 ep", trained(attacks.fine_prune, stolen, data, 0.6, plan)))
    plan = attacks.FineTune(1, 3e-3, seed=3)
    grid.append(
        ("informed removal, 1 ep", trained(attacks.informed_removal, stolen, evidence, data, plan))
    )
    distill = lambda: attacks.distill(stolen, SmallResNet(config), data, 4, seed=3)[0]  # noqa: E731
    grid.append(("distill, 4 ep", distill))
    for label, attack in grid:
        print(f"attack: {label}", flush=True)
        copy = attack().float().eval()
        path = f"files/attack-{len(claims)}.safetensors"
        (root / path).write_bytes(encode_artefact(copy, arch, config))
        claims.append(Claim(label, "attack", path, oe, SEED_PROFILE, [oe, ce]))

    for kind, model_class in FORWARDS.items():
        own_reference = with_own_reference(rebuilt(model_class, stolen), evidence)
        claims.append(
            Claim(f"fp32-adversarial {kind}", "adversarial", om,
                  keep_evidence(own_reference, kind), SEED_PROFILE, forward=kind)
        )  # fmt: skip
    shifted = [row[:] for row in evidence.reference_logits]
    shifted[3][5] += 0.03
    edge = evidence.model_copy(update={"reference_logits": shifted})
    stat = compute_stats(stolen, edge, precision="float64").logit_stat
    edge_path = keep_evidence(edge, "band-edge")
    for side, high in (("below", stat - 1e-7), ("above", stat + 1e-7)):
        claims.append(
            Claim(f"band edge 1e-7 {side} the statistic", "adversarial", om, edge_path,
                  (0.9, 0.2, -0.05, high))
        )  # fmt: skip
    (root / "claims.json").write_text(json.dumps([asdict(c) for c in claims], indent=1))
    size = sum(p.stat().st_size for p in files.iterdir())
    print(f"wrote {len(claims)} claims to {root} ({size / 2**20:.1f} MiB)")


# --- check (on each device) --------------------------------------------------------------------


def load_claim(root: Path, claim: Claim) -> tuple[nn.Module, Evidence, list[Evidence]]:
    with timm_models_allowed(TIMM):
        model = load_artefact(root / claim.model).model
    if claim.forward != "plain":
        model = rebuilt(FORWARDS[claim.forward], model)
    evidence = parse_evidence((root / claim.evidence).read_bytes())
    return model, evidence, [parse_evidence((root / p).read_bytes()) for p in claim.priors]


def verdict(
    model: nn.Module, evidence: Evidence, priors: list[Evidence], profile: Thresholds,
    device: str, precision: Any,
) -> dict[str, Any]:  # fmt: skip
    """What a validator's verdict rests on, computed as the ML service computes it."""
    stats, carries = compute_stats_and_carry(model, evidence, priors, device, precision)
    reason, decided_on = decide(
        stats, profile, DEFAULT_FLOORS,
        lambda: compute_stats(model, evidence, device, precision="float64"),
    )  # fmt: skip
    return {
        "reason": reason,
        "trigger_correct": decided_on.trigger_correct,
        "feat_matches": decided_on.feat_matches,
        "logit_stat": decided_on.logit_stat,
        "exact_rows": stats.exact_rows,
        "carries": [
            [c.trigger_correct, c.feat_matches, c.carries(DEFAULT_FLOORS.derivative_p_log2)]
            for c in carries
        ],
    }


DECISIVE = ("reason", "trigger_correct", "feat_matches", "carries")


def median_ms(fn: Callable[[], object], device: str, repeats: int = 7) -> float:
    def timed() -> float:
        started = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    timed()  # warm-up
    return statistics.median(timed() for _ in range(repeats)) * 1000


def check(root: Path, out: Path) -> int:
    claims, loaded, unloadable = [], {}, []
    for body in json.loads((root / "claims.json").read_text()):
        claim = Claim(**body)
        try:
            loaded[claim.name] = load_claim(root, claim)
        except Exception as exc:  # e.g. another timm version here: report it, check the rest
            unloadable.append(f"{claim.name}: {exc!s:.200}")
            continue
        claims.append(claim)
    cores = os.cpu_count() or 1
    configs = [("cpu", 1), ("cpu", cores)]
    if torch.cuda.is_available():
        configs.append(("cuda", cores))
    default_threads = torch.get_num_threads()
    results: dict[str, dict[str, Any]] = {c.name: {} for c in claims}
    latency: list[dict[str, Any]] = []
    for device, threads in configs:
        torch.set_num_threads(threads)
        for precision in ("fast", "float64"):
            label = f"{device}/{threads}t/{precision}"
            started = time.perf_counter()
            for claim in claims:
                model, evidence, priors = loaded[claim.name]
                results[claim.name][label] = verdict(
                    model, evidence, priors, Thresholds(*claim.profile), device, precision
                )
            print(f"{label}: {len(claims)} claims in {time.perf_counter() - started:.1f} s",
                  flush=True)  # fmt: skip
        if threads == 1:
            continue
        for claim in claims:
            if claim.group not in ("honest", "timm"):
                continue
            model, evidence, _ = loaded[claim.name]
            key = KeyMaterial.from_evidence(evidence)
            inputs = torch.cat([key.trigger_inputs(), key.probe_inputs()]).float().to(device)
            net = model.float().to(device)
            with torch.no_grad():
                floor = median_ms(partial(net, inputs), device)
            fast = median_ms(partial(compute_stats, model, evidence, device), device)
            exact = median_ms(partial(compute_stats, model, evidence, device, "float64"), device)
            model.to("cpu")
            latency.append({"claim": claim.name, "device": device, "threads": threads,
                            "inputs": len(inputs), "forward_ms": round(floor, 3),
                            "fast_ms": round(fast, 3), "float64_ms": round(exact, 3)})  # fmt: skip
    torch.set_num_threads(default_threads)

    reference = "cpu/1t/float64"
    rows, disagreements = [], 0
    for claim in claims:
        ref = results[claim.name][reference]
        differing = [
            label for label, r in results[claim.name].items()
            if any(r[k] != ref[k] for k in DECISIVE)
        ]  # fmt: skip
        disagreements += len(differing)
        spread = max(abs(r["logit_stat"] - ref["logit_stat"]) for r in results[claim.name].values())
        carried = sum(c[2] for c in ref["carries"])
        redone = " / ".join(
            str(max(r["exact_rows"] for label, r in results[claim.name].items()
                    if label.startswith(device) and label.endswith("/fast")))
            for device in dict.fromkeys(d for d, _ in configs)
        )  # fmt: skip
        rows.append((claim.group, claim.name, ref["reason"] or "accepted",
                     f"{carried}/{len(ref['carries'])}", f"{spread:.1e}", redone,
                     ", ".join(differing) or "none"))  # fmt: skip

    env = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),  # type: ignore[no-untyped-call]

        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cores": cores, "configs": [f"{d}/{t}t" for d, t in configs],
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    body = {"env": env, "results": results, "latency": latency, "unloadable": unloadable}
    (out / "devices.json").write_text(json.dumps(body, indent=1))
    lines = [
        f"{len(claims)} claims x {len(configs) * 2} configurations "
        f"({', '.join(env['configs'])}; fast and float64), against the CPU float64 "
        f"single-thread verdict: **{disagreements} disagreements**.",
        "",
        f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, {env['gpu']}, "
        f"{cores} CPU cores.",
        "",
        *(f"Not loadable here: {line}" for line in unloadable),
        "",
        "| group | claim | reference verdict | priors carried | logit_stat spread "
        f"| fast: rows in float64 ({' / '.join(dict.fromkeys(d for d, _ in configs))}) "
        "| differs in |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "| model | device | inputs | fp32 forward ms | fast ms | x forward | float64 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['claim']} | {r['device']}/{r['threads']}t | {r['inputs']} | "
            f"{r['forward_ms']:.2f} | {r['fast_ms']:.2f} | {r['fast_ms'] / r['forward_ms']:.2f} "
            f"| {r['float64_ms']:.2f} |"
            for r in latency
        ),
    ]
    (out / "devices.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if disagreements else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write the claims (on the CPU, from the model cache)")
    p.add_argument("root", type=Path)
    c = sub.add_parser("check", help="verify every claim on every device and compare")
    c.add_argument("root", type=Path)
    c.add_argument("--out", type=Path, default=Path("data/devices/out"))
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.root)
    else:
        sys.exit(check(args.root, args.out))


if __name__ == "__main__":
    main()
