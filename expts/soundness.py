"""Soundness experiments for `multi_factor_v2` under the chain's floors (issue 9, part 6).

    .venv/bin/python expts/soundness.py                 # the full run (~10 min on 2 CPU cores)
    .venv/bin/python expts/soundness.py --quick         # a smoke run (~1 min)

All models are the *tiny* SmallResNet (stem 8, widths 16/32/32, ~25k parameters): the full one
trains for over a minute per model, and this needs dozens. Everything is trained on
scikit-learn's bundled digits; nothing is downloaded.

1. Null distribution: N independently trained unwatermarked models x M random owner keys
   each. For every (model, key): both p-values, and whether the claim would pass (the seed
   profile and the chain's floors). Target false-accept rate: 0.
2. True accepts: W watermarked models (fresh key each), verified against their own evidence.
   Target accept rate: 100%.
3. Robustness of one watermarked model to: fine-tuning without the key (1-10 epochs, two
   learning rates), global magnitude pruning (10-90%), and the overwrite attack (fine-tuning
   with a thief's own watermark). For each: task accuracy, trigger_acc, feat_dist, both
   p-values, whether the owner's watermark still verifies (profile and floors; the logit
   factor is left out, since a changed model is a different function by design), and whether
   derivative detection still flags the result as the original's.

Every verdict is computed at precision `fast` (fp32 with float64 fallback) and checked against
float64 alone: summary.json counts the checks and the disagreements (target: 0).

Writes to --out: null.csv, true_accepts.csv, robustness.csv, summary.json, null_pvalues.png,
robustness.png.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from authchain.floors import DEFAULT_FLOORS, log2_tail
from authchain.ml_service.data import Dataset, load_digits_split
from authchain.ml_service.models import SmallResNet, SmallResNetConfig, get_architecture
from authchain.ml_service.train import TrainConfig, evaluate_accuracy, train
from authchain.ml_service.watermark.embed import EmbedSpec, make_evidence, new_key_material
from authchain.ml_service.watermark.evidence import Evidence
from authchain.ml_service.watermark.verify import (
    CarryStats,
    FactorStats,
    Thresholds,
    compute_carry_stats,
    compute_stats,
    decide,
    judge,
)

SEED_PROFILE = Thresholds(0.9, 0.2, -0.05, 0.05)
FLOORS = DEFAULT_FLOORS
ARCH = get_architecture("small_resnet")
SPEC = EmbedSpec()


def owner() -> bytes:
    return secrets.token_bytes(32)


def new_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return SmallResNet(SmallResNetConfig.tiny())


def fresh_evidence(model: nn.Module) -> Evidence:
    """Honest evidence for `model` under a random owner and key seed."""
    key = new_key_material(owner(), ARCH, 10, SPEC)
    return make_evidence(model, key, ARCH, SPEC)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


PRECISION = {"checked": 0, "mismatches": 0, "exact_rows": 0, "rows": 0}
"""Every verdict below is computed at precision `fast` and checked against float64."""


def checked_stats(model: nn.Module, evidence: Evidence) -> tuple[FactorStats, str | None]:
    """The claim's statistics and verdict under the seed profile at precision `fast`, after
    checking that float64 alone reaches the same verdict and counts."""
    reason, stats = decide(
        compute_stats(model, evidence), SEED_PROFILE, FLOORS,
        lambda: compute_stats(model, evidence, precision="float64"),
    )  # fmt: skip
    exact = compute_stats(model, evidence, precision="float64")
    same = reason == judge(exact, SEED_PROFILE, FLOORS) and (
        stats.trigger_correct, stats.feat_matches) == (exact.trigger_correct, exact.feat_matches
    )  # fmt: skip
    PRECISION["checked"] += 1
    PRECISION["mismatches"] += not same
    PRECISION["exact_rows"] += stats.exact_rows
    PRECISION["rows"] += evidence.trigger_count + evidence.probe_count
    return stats, reason


def checked_carry(model: nn.Module, priors: list[Evidence]) -> list[CarryStats]:
    """Carry statistics at precision `fast`, checked against float64."""
    fast = compute_carry_stats(model, priors)
    PRECISION["checked"] += len(priors)
    PRECISION["mismatches"] += sum(
        a != b
        for a, b in zip(fast, compute_carry_stats(model, priors, precision="float64"), strict=True)
    )
    return fast


def null_distribution(
    data: tuple[Dataset, Dataset], n_models: int, n_keys: int, epochs: int
) -> list[dict[str, Any]]:
    rows = []
    for m in range(n_models):
        started = time.perf_counter()
        model = train(new_model(1000 + m), data[0], TrainConfig(epochs=epochs, seed=1000 + m))
        evidences = [fresh_evidence(model) for _ in range(n_keys)]
        for k, carry in enumerate(checked_carry(model, evidences)):
            trig = log2_tail(carry.trigger_correct, carry.trigger_count, 10)
            matches = carry.feat_matches or 0
            feat = log2_tail(matches, carry.signature_bits, 2)
            passes_floors = trig <= -FLOORS.trigger_p_log2 and feat <= -FLOORS.feature_p_log2
            seed_ok = (
                carry.trigger_correct / carry.trigger_count >= SEED_PROFILE.tau_input
                and 1 - matches / carry.signature_bits <= SEED_PROFILE.tau_feat
            )
            rows.append({
                "model": m, "key": k, "trigger_correct": carry.trigger_correct,
                "trigger_count": carry.trigger_count, "feat_matches": matches,
                "signature_bits": carry.signature_bits, "log2_p_trigger": round(trig, 4),
                "log2_p_feature": round(feat, 4), "passes_seed_profile": seed_ok,
                "accepted": seed_ok and passes_floors,
            })  # fmt: skip
        print(
            f"null: model {m + 1}/{n_models}, {n_keys} keys ({time.perf_counter() - started:.1f}s)"
        )
    return rows


def true_accepts(data: tuple[Dataset, Dataset], n_models: int) -> list[dict[str, Any]]:
    rows = []
    for m in range(n_models):
        key = new_key_material(owner(), ARCH, 10, SPEC)
        model = train(new_model(2000 + m), data[0], TrainConfig(seed=2000 + m), key=key, spec=SPEC)
        evidence = make_evidence(model, key, ARCH, SPEC)
        stats, reason = checked_stats(model, evidence)
        rows.append({
            "model": m, "test_accuracy": round(evaluate_accuracy(model, data[1]), 4),
            **{k: v for k, v in asdict(stats).items() if k != "p_value"},
            "accepted": reason is None, "reason": reason or "",
        })  # fmt: skip
        print(f"true accepts: model {m + 1}/{n_models}: {reason or 'accepted'}")
    return rows


def prune(model: nn.Module, fraction: float) -> nn.Module:
    """Global magnitude pruning of every conv and linear weight."""
    pruned = copy.deepcopy(model)
    weights = [p for n, p in pruned.named_parameters() if n.endswith("weight") and p.dim() > 1]
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    k = int(fraction * flat.numel())
    if k > 0:
        threshold = flat.kthvalue(k).values
        with torch.no_grad():
            for w in weights:
                w.mul_((w.abs() > threshold).to(w.dtype))
    return pruned


def attack_row(
    attack: str, strength: float, model: nn.Module, evidence: Evidence, test: Dataset
) -> dict[str, Any]:
    stats, verdict = checked_stats(model, evidence)
    carry = checked_carry(model, [evidence])[0]
    reason = verdict or ""
    # A changed model is a different function, so the logit factor (which binds the evidence
    # to the registered bytes) fails by design; the question is whether the watermark remains.
    lost = [r for r in reason.split(";") if r and r != "logit_stat_outside_band"]
    return {
        "attack": attack, "strength": strength,
        "test_accuracy": round(evaluate_accuracy(model, test), 4),
        "trigger_acc": stats.trigger_acc, "feat_dist": stats.feat_dist,
        "log2_p_trigger": stats.log2_p_value, "log2_p_feature": stats.log2_feat_p_value,
        "owner_watermark": ";".join(lost) or "verifies",
        "same_function": "logit_stat_outside_band" not in reason,
        "flagged_as_derivative": carry.carries(FLOORS.derivative_p_log2),
    }  # fmt: skip


def robustness(
    data: tuple[Dataset, Dataset], epochs_grid: Iterable[int], lrs: Iterable[float]
) -> list[dict[str, Any]]:
    key = new_key_material(owner(), ARCH, 10, SPEC)
    original = train(new_model(3000), data[0], TrainConfig(seed=3000), key=key, spec=SPEC)
    evidence = make_evidence(original, key, ARCH, SPEC)
    rows = [attack_row("none", 0, original, evidence, data[1])]
    for lr in lrs:
        for epochs in epochs_grid:
            tuned = train(
                copy.deepcopy(original), data[0], TrainConfig(epochs=epochs, lr=lr, seed=7)
            )
            rows.append(attack_row(f"fine-tune lr={lr:g}", epochs, tuned, evidence, data[1]))
            print(f"robustness: fine-tune lr={lr:g} {epochs} epochs: {rows[-1]['owner_watermark']}")
    for percent in range(10, 100, 10):
        rows.append(attack_row("prune", percent, prune(original, percent / 100), evidence, data[1]))
        print(f"robustness: prune {percent}%: {rows[-1]['owner_watermark']}")
    for epochs in epochs_grid:
        thief = new_key_material(owner(), ARCH, 10, SPEC)
        config = TrainConfig(epochs=epochs, lr=2e-3, seed=8)
        stolen = train(copy.deepcopy(original), data[0], config, key=thief, spec=SPEC)
        row = attack_row("overwrite", epochs, stolen, evidence, data[1])
        own = checked_stats(stolen, make_evidence(stolen, thief, ARCH, SPEC))[1]
        row["thief_claim_passes_alone"] = own is None
        rows.append(row)
        print(f"robustness: overwrite {epochs} epochs: flagged={row['flagged_as_derivative']}")
    for row in rows:
        row.setdefault("thief_claim_passes_alone", "")
    return rows


def plot_null(rows: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for ax, column, floor, label in (
        (axes[0], "log2_p_trigger", FLOORS.trigger_p_log2, "trigger factor"),
        (axes[1], "log2_p_feature", FLOORS.feature_p_log2, "feature factor"),
    ):
        values = [r[column] for r in rows]
        ax.hist(values, bins=40, color="tab:blue", alpha=0.8)
        ax.axvline(-floor, color="tab:red", linestyle="--", label=f"floor 2^-{floor}")
        ax.set_xlabel(f"log2 p-value, {label}")
        ax.set_ylabel("(model, key) pairs")
        ax.set_xlim(min(-floor - 4, min(values) - 1), 0.5)
        ax.legend()
    # calibration: under the null, P[p <= 2^-t] <= 2^-t exactly (the binomials are exact)
    ts = list(range(0, 13))
    for column, label, marker in (("log2_p_trigger", "trigger", "o"),
                                  ("log2_p_feature", "feature", "s")):  # fmt: skip
        fractions = [sum(r[column] <= -t for r in rows) / len(rows) for t in ts]
        axes[2].semilogy(ts, [max(f, 0.5 / len(rows)) for f in fractions], marker, label=label)
    axes[2].semilogy(ts, [2.0**-t for t in ts], "k--", label="bound 2^-t")
    axes[2].set_xlabel("t")
    axes[2].set_ylabel("fraction of pairs with p <= 2^-t")
    axes[2].legend()
    accepted = sum(r["accepted"] for r in rows)
    fig.suptitle(
        f"Null distribution: {len(rows)} (unwatermarked model, random key) pairs, "
        f"{accepted} accepted"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_robustness(rows: list[dict[str, Any]], path: Path) -> None:
    attacks = [a for a in dict.fromkeys(r["attack"] for r in rows) if a != "none"]
    fig, axes = plt.subplots(2, len(attacks), figsize=(4.2 * len(attacks), 7), squeeze=False)
    for col, attack in enumerate(attacks):
        sub = [r for r in rows if r["attack"] == attack]
        x = [r["strength"] for r in sub]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(x, [r["trigger_acc"] for r in sub], "o-", label="trigger_acc")
        top.plot(x, [r["feat_dist"] for r in sub], "s-", label="feat_dist")
        top.plot(x, [r["test_accuracy"] for r in sub], "^-", label="task accuracy")
        top.set_ylim(-0.05, 1.05)
        top.set_title(attack)
        top.legend(fontsize=8)
        bottom.plot(x, [r["log2_p_trigger"] for r in sub], "o-", label="log2 p trigger")
        bottom.plot(x, [r["log2_p_feature"] for r in sub], "s-", label="log2 p feature")
        bottom.axhline(-FLOORS.trigger_p_log2, color="tab:red", linestyle="--", label="2^-64")
        bottom.axhline(-FLOORS.feature_p_log2, color="tab:orange", linestyle=":", label="2^-32")
        bottom.set_xlabel("epochs" if attack != "prune" else "% of weights pruned")
        bottom.legend(fontsize=8)
    fig.suptitle("Robustness of one tiny watermarked SmallResNet (the floors are dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/expts/soundness"))
    parser.add_argument("--null-models", type=int, default=20)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--true-models", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 x 10 null, 2 true, short grids")
    args = parser.parse_args()
    if args.quick:
        args.null_models, args.keys, args.true_models = 3, 10, 2
    epochs_grid = [1, 3] if args.quick else [1, 2, 4, 6, 8, 10]
    lrs = [1e-3] if args.quick else [1e-3, 3e-3]
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_digits_split()
    started = time.perf_counter()

    null = null_distribution(data, args.null_models, args.keys, epochs=4)
    write_csv(args.out / "null.csv", null)
    plot_null(null, args.out / "null_pvalues.png")
    accepts = true_accepts(data, args.true_models)
    write_csv(args.out / "true_accepts.csv", accepts)
    robust = robustness(data, epochs_grid, lrs)
    write_csv(args.out / "robustness.csv", robust)
    plot_robustness(robust, args.out / "robustness.png")

    summary = {
        "models": "tiny SmallResNet (stem 8, widths 16/32/32) on the bundled digits",
        "floors": asdict(FLOORS),
        "null_pairs": len(null),
        "null_false_accepts": sum(r["accepted"] for r in null),
        "null_pass_seed_profile_without_floors": sum(r["passes_seed_profile"] for r in null),
        "null_min_log2_p_trigger": min(r["log2_p_trigger"] for r in null),
        "null_min_log2_p_feature": min(r["log2_p_feature"] for r in null),
        "true_models": len(accepts),
        "true_accept_rate": sum(r["accepted"] for r in accepts) / len(accepts),
        "precision_checked": PRECISION["checked"],
        "precision_mismatches_fast_vs_float64": PRECISION["mismatches"],
        "precision_float64_rows_share": round(
            PRECISION["exact_rows"] / max(1, PRECISION["rows"]), 4
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/null.csv, true_accepts.csv, robustness.csv, *.png")
    if PRECISION["mismatches"]:
        raise SystemExit("fast precision disagreed with float64: see summary.json")
    if summary["null_false_accepts"] or not math.isclose(summary["true_accept_rate"], 1.0):
        raise SystemExit("soundness targets missed: see summary.json")


if __name__ == "__main__":
    main()
