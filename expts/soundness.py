"""Soundness experiments for `multi_factor_v2` under the chain's floors (issues 9 and 20).

    .venv/bin/python expts/soundness.py                 # the full run (~35 min on 2 CPU cores)
    .venv/bin/python expts/soundness.py --quick         # a smoke run (~2 min)

`--cache DIR` keeps the computed rows under DIR, keyed by the settings and a digest of the ML
code and of this script, and a later run with the same key only redraws (the test suite's
smoke run does this, as it caches its trained models).

All models are the *tiny* SmallResNet (stem 8, widths 16/32/32): the full one trains for over
a minute per model, and this needs hundreds. Everything is trained on scikit-learn's bundled
digits; nothing is downloaded.

1. Null distribution: N independently trained unwatermarked models x M random owner keys. For
   every (model, key): both p-values, whether the claim would pass (the seed profile and the
   chain's floors), and whether derivative detection (both factors, Fisher's method, 2^-64)
   would flag the model as carrying that key's watermark. Targets: 0 false accepts, 0 false
   flags.
2. True accepts: W watermarked models (fresh key each), verified against their own evidence,
   next to a clean model trained with the same seed: the watermark's cost in task accuracy.
   Target accept rate: 100%.
3. The attack suite: O owner models; each attack at several strengths; each attacked copy
   then carries the thief's own watermark, embedded as `authchain model train --from` does
   (2 epochs at lr 2e-3: the least that passes every floor on its own). For each: the attack's
   compute as a fraction of the owner's training (examples through a forward and backward
   pass, the thief's watermark included), task accuracy, the owner's triggers and signature
   bits in the copy, the combined p-value, and whether registration would catch it
   (`carries_registered_watermark`). An attack counts only while task accuracy stays within
   5 points of the stolen model's. The attacks (`authchain.ml_service.attacks`):
   - each function-preserving rewrite (permutation, ReLU rescaling, sign flips, BatchNorm
     folding, float16, bfloat16), and all of them together;
   - all rewrites, then a keyless fine-tune at peak lr 1e-3, 3e-3 and 1e-2 for 1-10 epochs,
     with and without noise inputs under uniform soft labels;
   - pruning, fine-pruning, int8 and float16 quantization;
   - the thief's watermark alone at a high learning rate (a stronger overwrite than the tool's);
   - informed removal: a thief who holds the evidence trains the triggers and signature away;
   - distillation: a fresh model trained only on the stolen model's soft outputs.

Every verdict is computed at precision `fast` (fp32 with float64 fallback) and checked against
float64 alone: summary.json counts the checks and the disagreements (target: 0).

Writes to --out: null.csv, true_accepts.csv, attacks.csv, attacks.md (the table, as in
docs/SECURITY.md), summary.json, null_pvalues.png, attacks.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from authchain.floors import DEFAULT_FLOORS, log2_tail
from authchain.ml_service import attacks
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.data import Dataset, load_digits_split
from authchain.ml_service.models import SmallResNet, SmallResNetConfig, get_architecture
from authchain.ml_service.train import TrainConfig, evaluate_accuracy, train
from authchain.ml_service.watermark.embed import (
    EmbedSpec,
    make_evidence,
    new_key_material,
    recommend_profile,
)
from authchain.ml_service.watermark.evidence import Evidence, parse_evidence
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
OWNER_EPOCHS = 6
THIEF_WATERMARK = TrainConfig(epochs=2, lr=2e-3, seed=8)
"""The thief's own watermark on his copy: `model train --from` at 2 epochs."""
ACCURACY_SLACK = 0.05
"""An attack counts only while task accuracy stays within 5 points of the stolen model's."""


def key_bytes(label: str, index: int) -> bytes:
    """A fixed 32-byte value per (label, index): runs are reproducible."""
    return (f"{label}/{index}".encode() * 32)[:32]


def new_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return SmallResNet(SmallResNetConfig.tiny())


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def training_examples(data: Dataset, config: TrainConfig, watermarked: bool) -> int:
    """Examples one `train` call runs forward and backward (triggers included)."""
    steps = config.epochs * -(-len(data) // config.batch_size)
    return config.epochs * len(data) + (steps * config.trigger_batch if watermarked else 0)


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


def counted_precision(job: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, dict[str, int]]]:
    """`job` run in a worker process, returning its result and its precision checks."""
    return _Counted(job)


class _Counted:
    def __init__(self, job: Callable[[Any], Any]) -> None:
        self.job = job

    def __call__(self, args: Any) -> tuple[Any, dict[str, int]]:
        for name in PRECISION:
            PRECISION[name] = 0
        return self.job(args), dict(PRECISION)


def run_all(pool: ProcessPoolExecutor, job: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
    """`job` over `jobs` in the pool, in order; the workers' precision checks added up here."""
    results = []
    for result, checks in pool.map(counted_precision(job), jobs):
        results.append(result)
        for name, value in checks.items():
            PRECISION[name] += value
    return results


# --- 1. the null -----------------------------------------------------------------------------


def null_model(args: tuple[int, int, int]) -> list[dict[str, Any]]:
    """One independently trained clean model against `keys` random owner keys."""
    m, keys, epochs = args
    torch.set_num_threads(1)
    data = load_digits_split()
    model = train(new_model(1000 + m), data[0], TrainConfig(epochs=epochs, seed=1000 + m))
    evidences = []
    for k in range(keys):
        key = new_key_material(key_bytes("null-owner", m * 1000 + k), ARCH, 10, SPEC,
                               key_bytes("null-key", m * 1000 + k), model)  # fmt: skip
        evidences.append(make_evidence(model, key, ARCH, SPEC))
    rows = []
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
            "log2_p_feature": round(feat, 4),
            "log2_p_combined": round(carry.log2_p_value(), 4),
            "passes_seed_profile": seed_ok, "accepted": seed_ok and passes_floors,
            "flagged_as_derivative": carry.carries(FLOORS.derivative_p_log2),
        })  # fmt: skip
    print(f"null: model {m + 1}, {keys} keys", flush=True)
    return rows


# --- 2. true accepts -------------------------------------------------------------------------


def true_accept(m: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    data = load_digits_split()
    model = new_model(2000 + m)
    key = new_key_material(key_bytes("owner", 2000 + m), ARCH, 10, SPEC,
                           key_bytes("key", 2000 + m), model)  # fmt: skip
    train(model, data[0], TrainConfig(seed=2000 + m), key=key, spec=SPEC)
    clean = train(new_model(2000 + m), data[0], TrainConfig(seed=2000 + m))
    stats, reason = checked_stats(model, make_evidence(model, key, ARCH, SPEC))
    print(f"true accepts: model {m + 1}: {reason or 'accepted'}", flush=True)
    return {
        "model": m, "test_accuracy": round(evaluate_accuracy(model, data[1]), 4),
        "clean_test_accuracy": round(evaluate_accuracy(clean, data[1]), 4),
        **{k: v for k, v in asdict(stats).items() if k != "p_value"},
        "accepted": reason is None, "reason": reason or "",
    }  # fmt: skip


# --- 3. the attack suite ---------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """One attack at one strength."""

    family: str
    name: str
    run: Runner


Runner = Callable[[nn.Module, Evidence, Dataset, int], tuple[nn.Module, int]]
"""(stolen model, the owner's evidence, training data, seed) -> (copy, examples)."""


def _rewrite(name: str) -> Runner:
    def run(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
        return attacks.REWRITES[name](m, torch.Generator().manual_seed(seed)), 0

    return run


def _rewritten_fine_tune(lr: float, epochs: int, noise: bool) -> Runner:
    def run(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
        rewritten = attacks.all_rewrites(m, torch.Generator().manual_seed(seed))
        return attacks.fine_tune(rewritten, data, attacks.FineTune(epochs, lr, noise, seed))

    return run


def _prune(fraction: float) -> Runner:
    def run(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
        return attacks.prune(m, fraction), 0

    return run


def _fine_prune(fraction: float, epochs: int, lr: float) -> Runner:
    def run(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
        return attacks.fine_prune(m, data, fraction, attacks.FineTune(epochs, lr, seed=seed))

    return run


def _quantize_int8(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
    return attacks.quantize_int8(m), 0


def _overwrite(lr: float, epochs: int) -> Runner:
    # the thief's own watermark alone, at a higher learning rate than the tool's: his key is
    # fixed per seed, so the watermark added afterwards is the same one, reinforced
    def run(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
        copy = load_copy(m)
        config = TrainConfig(epochs=epochs, lr=lr, seed=seed)
        tuned = train(copy, data, config, key=thief_key(seed, copy), spec=SPEC)
        return tuned, training_examples(data, config, True)

    return run


def _informed(epochs: int, lr: float) -> Runner:
    def run(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
        return attacks.informed_removal(m, ev, data, attacks.FineTune(epochs, lr, seed=seed))

    return run


def _distill(epochs: int) -> Runner:
    def run(m: nn.Module, ev: Evidence, data: Dataset, seed: int) -> tuple[nn.Module, int]:
        return attacks.distill(m, new_model(seed), data, epochs, seed=seed)

    return run


def attack_grid(quick: bool) -> list[Attack]:
    grid: list[Attack] = []
    for name in ["all"] if quick else sorted(attacks.REWRITES):
        grid.append(Attack("rewrite", name, _rewrite(name)))
    lrs = [1e-2] if quick else [1e-3, 3e-3, 1e-2]
    epochs_grid = [3] if quick else [1, 3, 5, 10]
    for noise in [False] if quick else [False, True]:
        family = "rewrites + fine-tune" + (" + noise" if noise else "")
        for lr in lrs:
            for epochs in epochs_grid:
                runner = _rewritten_fine_tune(lr, epochs, noise)
                grid.append(Attack(family, f"lr {lr:g}, {epochs} ep", runner))
    for fraction in [0.5] if quick else [0.3, 0.5, 0.7, 0.9]:
        grid.append(Attack("prune", f"{fraction:.0%}", _prune(fraction)))
    if quick:
        return grid
    for fraction in (0.3, 0.6, 0.8):
        grid.append(Attack("fine-prune", f"{fraction:.0%}, 2 ep", _fine_prune(fraction, 2, 3e-3)))
    grid.append(Attack("quantize", "int8", _quantize_int8))
    grid.append(Attack("quantize", "float16", _rewrite("float16")))
    for lr, epochs in ((1e-2, 3), (1e-2, 5)):
        grid.append(Attack("overwrite", f"lr {lr:g}, {epochs} ep", _overwrite(lr, epochs)))
    for epochs in (1, 3):
        grid.append(Attack("informed removal", f"{epochs} ep", _informed(epochs, 3e-3)))
    for epochs in (6, 10):
        grid.append(Attack("distill", f"{epochs} ep", _distill(epochs)))
    return grid


def load_copy(model: nn.Module) -> nn.Module:
    """A fresh copy of `model` (what the thief downloads)."""
    import copy

    return copy.deepcopy(model)


def thief_key(seed: int, model: nn.Module) -> Any:
    return new_key_material(key_bytes("thief", seed), ARCH, 10, SPEC, key_bytes("tkey", seed),
                            model)  # fmt: skip


def train_owner(args: tuple[int, Path]) -> dict[str, Any]:
    """Owner model `o`: trained with its watermark, written to `root/owner-o`."""
    o, root = args
    torch.set_num_threads(1)
    data = load_digits_split()
    model = new_model(3000 + o)
    key = new_key_material(key_bytes("owner", 3000 + o), ARCH, 10, SPEC,
                           key_bytes("key", 3000 + o), model)  # fmt: skip
    config = TrainConfig(epochs=OWNER_EPOCHS, seed=3000 + o)
    train(model, data[0], config, key=key, spec=SPEC)
    out = root / f"owner-{o}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.safetensors").write_bytes(encode_artefact(model, ARCH, SmallResNetConfig.tiny()))
    (out / "evidence.json").write_bytes(make_evidence(model, key, ARCH, SPEC).to_bytes())
    accuracy = evaluate_accuracy(model, data[1])
    print(f"owner {o}: test accuracy {accuracy:.3f}", flush=True)
    return {"owner": o, "accuracy": accuracy,
            "examples": training_examples(data[0], config, True)}  # fmt: skip


def run_attack(args: tuple[int, int, Path, bool, float, int]) -> dict[str, Any]:
    """Attack `index` of the grid on owner `o`, then the thief's watermark; one CSV row."""
    o, index, root, quick, stolen_accuracy, owner_examples = args
    torch.set_num_threads(1)
    attack = attack_grid(quick)[index]
    data = load_digits_split()
    owner = load_artefact(root / f"owner-{o}" / "model.safetensors").model
    evidence = parse_evidence((root / f"owner-{o}" / "evidence.json").read_bytes())
    seed = 100 * o + index
    started = time.perf_counter()
    attacked, examples = attack.run(owner, evidence, data[0], seed)
    before = checked_carry(attacked, [evidence])[0]
    key = thief_key(seed, attacked)
    copy = train(load_copy(attacked), data[0], THIEF_WATERMARK, key=key, spec=SPEC)
    examples += training_examples(data[0], THIEF_WATERMARK, True)
    carry = checked_carry(copy, [evidence])[0]
    thief_stats = compute_stats(copy, make_evidence(copy, key, ARCH, SPEC), precision="float64")
    accuracy = evaluate_accuracy(copy, data[1])
    caught = carry.carries(FLOORS.derivative_p_log2)
    row = {
        "family": attack.family, "attack": attack.name, "owner": o,
        "compute": round(examples / owner_examples, 3), "test_accuracy": round(accuracy, 4),
        "stolen_accuracy": round(stolen_accuracy, 4),
        "counted": accuracy >= stolen_accuracy - ACCURACY_SLACK,
        "owner_triggers": carry.trigger_correct, "owner_bits": carry.feat_matches or 0,
        "bits_read": carry.signature_bits,
        "log2_p_trigger": round(log2_tail(carry.trigger_correct, carry.trigger_count, 10), 2),
        "log2_p_signature": round(log2_tail(carry.feat_matches or 0, carry.signature_bits, 2), 2),
        "log2_p_combined": round(carry.log2_p_value(), 2),
        "log2_p_combined_before_thief_watermark": round(before.log2_p_value(), 2),
        "thief_claim_passes_alone": recommend_profile(thief_stats, FLOORS) is not None,
        "caught": caught, "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    print(f"attack {attack.family} / {attack.name} on owner {o}: "
          f"{'caught' if caught else 'NOT caught'} (2^{row['log2_p_combined']}), "
          f"accuracy {accuracy:.3f}, compute {row['compute']}", flush=True)  # fmt: skip
    return row


def summarise_attacks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per attack: means over owners, and how many were caught."""
    table = []
    for family, name in dict.fromkeys((r["family"], r["attack"]) for r in rows):
        sub = [r for r in rows if r["family"] == family and r["attack"] == name]
        counted = [r for r in sub if r["counted"]]
        table.append({
            "family": family, "attack": name,
            "compute": round(statistics.mean(r["compute"] for r in sub), 2),
            "test_accuracy": round(statistics.mean(r["test_accuracy"] for r in sub), 3),
            "owner_triggers": round(statistics.mean(r["owner_triggers"] for r in sub), 1),
            "owner_bits": round(statistics.mean(r["owner_bits"] for r in sub)),
            "bits_read": sub[0]["bits_read"],
            "worst_log2_p": max(r["log2_p_combined"] for r in sub),
            "median_log2_p": statistics.median(r["log2_p_combined"] for r in sub),
            "caught": sum(r["caught"] for r in sub), "runs": len(sub),
            "counted": len(counted), "counted_not_caught": sum(not r["caught"] for r in counted),
        })  # fmt: skip
    return table


def markdown_table(table: list[dict[str, Any]]) -> str:
    lines = [
        "| attack | strength | compute | task accuracy | owner's triggers | owner's bits "
        "| combined p (worst / median) | caught |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in table:
        counted = "" if t["counted"] == t["runs"] else f" ({t['runs'] - t['counted']} lost >5 pts)"
        lines.append(
            f"| {t['family']} | {t['attack']} | {t['compute']:.2f} | {t['test_accuracy']:.3f} "
            f"| {t['owner_triggers']:.0f}/100 | {t['owner_bits']}/{t['bits_read']} "
            f"| 2^{t['worst_log2_p']:.0f} / 2^{t['median_log2_p']:.0f} "
            f"| {t['caught']}/{t['runs']}{counted} |"
        )
    return "\n".join(lines) + "\n"


# --- plots -----------------------------------------------------------------------------------


def plot_null(rows: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for ax, column, floor, label in (
        (axes[0], "log2_p_trigger", FLOORS.trigger_p_log2, "trigger factor"),
        (axes[1], "log2_p_feature", FLOORS.feature_p_log2, "signature factor"),
        (axes[2], "log2_p_combined", FLOORS.derivative_p_log2, "both (derivative test)"),
    ):
        values = [r[column] for r in rows]
        ax.hist(values, bins=40, color="tab:blue", alpha=0.8)
        ax.axvline(-floor, color="tab:red", linestyle="--", label=f"floor 2^-{floor}")
        ax.set_xlabel(f"log2 p-value, {label}")
        ax.set_ylabel("(model, key) pairs")
        ax.set_xlim(min(-floor - 4, min(values) - 1), 0.5)
        ax.legend()
    # calibration: under the null, P[p <= 2^-t] <= 2^-t (exact tails, Fisher's bound)
    ts = list(range(0, 13))
    for column, label, marker in (("log2_p_trigger", "trigger", "o"),
                                  ("log2_p_feature", "signature", "s"),
                                  ("log2_p_combined", "both", "^")):  # fmt: skip
        fractions = [sum(r[column] <= -t for r in rows) / len(rows) for t in ts]
        axes[3].semilogy(ts, [max(f, 0.5 / len(rows)) for f in fractions], marker, label=label)
    axes[3].semilogy(ts, [2.0**-t for t in ts], "k--", label="bound 2^-t")
    axes[3].set_xlabel("t")
    axes[3].set_ylabel("fraction of pairs with p <= 2^-t")
    axes[3].legend()
    accepted = sum(r["accepted"] for r in rows)
    flagged = sum(r["flagged_as_derivative"] for r in rows)
    fig.suptitle(
        f"Null distribution: {len(rows)} (unwatermarked model, random key) pairs, "
        f"{accepted} accepted, {flagged} flagged as derivatives"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attacks(rows: list[dict[str, Any]], path: Path) -> None:
    """Per attack family: the owner's combined p-value against the attack's compute (caught or
    not), and beneath it the copy's task accuracy; three families to a row."""
    families = list(dict.fromkeys(r["family"] for r in rows))
    width = min(3, len(families))
    height = -(-len(families) // width)
    fig, axes = plt.subplots(2 * height, width, figsize=(4.6 * width, 5.2 * height),
                             squeeze=False)  # fmt: skip
    for index, family in enumerate(families):
        sub = [r for r in rows if r["family"] == family]
        top, bottom = (
            axes[2 * (index // width)][index % width],
            axes[2 * (index // width) + 1][index % width],
        )
        for caught, style in ((True, "o"), (False, "x")):
            pts = [r for r in sub if r["caught"] == caught]
            top.plot([r["compute"] for r in pts], [max(r["log2_p_combined"], -400) for r in pts],
                     style, color="tab:green" if caught else "tab:red",
                     label="caught" if caught else "not caught")  # fmt: skip
        top.axhline(-FLOORS.derivative_p_log2, color="k", linestyle="--", label="floor 2^-64")
        top.set_title(family, fontsize=10)
        top.set_ylabel("owner's log2 p (both factors;\nclamped at -400)", fontsize=8)
        top.legend(fontsize=7)
        bottom.plot([r["compute"] for r in sub], [r["test_accuracy"] for r in sub], "^",
                    color="tab:blue", label="the thief's copy")  # fmt: skip
        stolen = statistics.mean(r["stolen_accuracy"] for r in sub)
        bottom.axhline(stolen, color="tab:gray", linestyle=":", label="stolen model")
        bottom.axhline(stolen - ACCURACY_SLACK, color="tab:red", linestyle=":", label="-5 points")
        bottom.set_ylim(max(0.0, min(r["test_accuracy"] for r in sub) - 0.05), 1.0)
        bottom.set_xlabel("compute / owner's training", fontsize=8)
        bottom.set_ylabel("task accuracy", fontsize=8)
        bottom.legend(fontsize=7)
    for index in range(len(families), width * height):
        axes[2 * (index // width)][index % width].axis("off")
        axes[2 * (index // width) + 1][index % width].axis("off")
    fig.suptitle("Removal attacks on tiny SmallResNets (multi_factor_v2), each followed by the "
                 "thief's own watermark")  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """A CSV this script wrote, with numbers and booleans as they were."""

    def value(text: str) -> Any:
        if text in ("True", "False"):
            return text == "True"
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    with path.open() as fh:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(fh)]


ROWS = ("null", "true_accepts", "attacks")


def compute(args: argparse.Namespace) -> tuple[list[dict[str, Any]], ...]:
    """The three experiments' rows: null pairs, true accepts, attacked copies."""
    grid = attack_grid(args.quick)
    with ProcessPoolExecutor(args.workers) as pool:
        null_jobs = [(m, args.keys, 4) for m in range(args.null_models)]
        null = [row for rows in run_all(pool, null_model, null_jobs) for row in rows]
        accepts = run_all(pool, true_accept, list(range(args.true_models)))
        owners = run_all(pool, train_owner, [(o, args.out / "owners") for o in range(args.owners)])
        jobs = [(o["owner"], i, args.out / "owners", args.quick, o["accuracy"], o["examples"])
                for i in range(len(grid)) for o in owners]  # fmt: skip
        attacked = run_all(pool, run_attack, jobs)
    return null, accepts, attacked


def run_key(args: argparse.Namespace) -> str:
    """The cache entry of a run: its settings and the code it runs."""
    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:  # run as a script: the repository's tests package
        sys.path.insert(0, repo)
    from tests.support.models import training_code_digest

    settings = (args.null_models, args.keys, args.true_models, args.owners)
    return f"soundness-{training_code_digest(Path(__file__))[:16]}-" + "-".join(map(str, settings))


def keep(entry: Path, *rows: list[dict[str, Any]]) -> None:
    """Write a run's rows to `entry` (atomically: a concurrent run finds all or nothing)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".soundness-", dir=entry.parent))
    for name, table in zip(ROWS, rows, strict=True):
        write_csv(work / f"{name}.csv", table)
    (work / "precision.json").write_text(json.dumps(PRECISION))
    try:
        os.rename(work, entry)
    except OSError:  # another run got there first
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/expts/soundness"))
    parser.add_argument("--null-models", type=int, default=20)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--true-models", type=int, default=10)
    parser.add_argument("--owners", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--quick", action="store_true", help="3 x 10 null, 2 true, 1 owner")
    parser.add_argument("--cache", type=Path, help="reuse the rows of an identical earlier run")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the plots and the table from --out's CSVs")  # fmt: skip
    args = parser.parse_args()
    if args.replot:
        attacked = read_csv(args.out / "attacks.csv")
        plot_null(read_csv(args.out / "null.csv"), args.out / "null_pvalues.png")
        plot_attacks(attacked, args.out / "attacks.png")
        (args.out / "attacks.md").write_text(markdown_table(summarise_attacks(attacked)))
        return
    if args.quick:
        args.null_models, args.keys, args.true_models, args.owners = 3, 10, 2, 1
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cached = args.cache and args.cache / run_key(args)
    if cached and (cached / "precision.json").exists():
        null, accepts, attacked = (read_csv(cached / f"{n}.csv") for n in ROWS)
        PRECISION.update(json.loads((cached / "precision.json").read_text()))
        print(f"rows from {cached} (the same settings and code ran before)")
    else:
        null, accepts, attacked = compute(args)
        if cached:
            keep(cached, null, accepts, attacked)
    write_csv(args.out / "null.csv", null)
    plot_null(null, args.out / "null_pvalues.png")
    write_csv(args.out / "true_accepts.csv", accepts)
    write_csv(args.out / "attacks.csv", attacked)
    table = summarise_attacks(attacked)
    (args.out / "attacks.md").write_text(markdown_table(table))
    plot_attacks(attacked, args.out / "attacks.png")

    counted = [r for r in attacked if r["counted"]]
    keyless = [r for r in counted if r["family"] not in ("informed removal", "distill")]
    summary = {
        "models": "tiny SmallResNet (stem 8, widths 16/32/32) on the bundled digits",
        "scheme": "multi_factor_v2",
        "floors": asdict(FLOORS),
        "null_pairs": len(null),
        "null_false_accepts": sum(r["accepted"] for r in null),
        "null_false_flags": sum(r["flagged_as_derivative"] for r in null),
        "null_pass_seed_profile_without_floors": sum(r["passes_seed_profile"] for r in null),
        "null_min_log2_p_trigger": min(r["log2_p_trigger"] for r in null),
        "null_min_log2_p_feature": min(r["log2_p_feature"] for r in null),
        "null_min_log2_p_combined": min(r["log2_p_combined"] for r in null),
        "true_models": len(accepts),
        "true_accept_rate": sum(r["accepted"] for r in accepts) / len(accepts),
        "watermark_accuracy_cost": round(statistics.mean(
            r["clean_test_accuracy"] - r["test_accuracy"] for r in accepts), 4),
        "owners": args.owners,
        "attack_runs": len(attacked),
        "attack_runs_counted": len(counted),
        "caught": sum(r["caught"] for r in counted),
        "keyless_under_owner_compute": sum(r["compute"] < 1 for r in keyless),
        "keyless_under_owner_compute_not_caught": sum(
            r["compute"] < 1 and not r["caught"] for r in keyless),
        "precision_checked": PRECISION["checked"],
        "precision_mismatches_fast_vs_float64": PRECISION["mismatches"],
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(markdown_table(table))
    print(f"wrote {args.out}/null.csv, true_accepts.csv, attacks.csv, attacks.md, *.png")
    if summary["precision_mismatches_fast_vs_float64"]:
        raise SystemExit("fast precision disagreed with float64: see summary.json")
    if (summary["null_false_accepts"] or summary["null_false_flags"]
            or not math.isclose(summary["true_accept_rate"], 1.0)):  # fmt: skip
        raise SystemExit("soundness targets missed: see summary.json")


if __name__ == "__main__":
    main()
