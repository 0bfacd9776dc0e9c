"""How much of the `multi_factor_v2` watermark a keyless fine-tune leaves in timm families.

    .venv/bin/python expts/timm_removal.py                  # ~10 min on 2 CPU cores
    .venv/bin/python expts/timm_removal.py --models test_vit --lrs 1e-3 --epochs 1

The signature lives in a model's spatial conv weights: nearly all of a ResNet's weights, the
depthwise kernels of an EfficientNet, and only the patch embedding of a ViT (its other weights
are linear layers, whose kernels have no shape). For each family (timm's small test models,
randomly initialised: nothing is downloaded), an owner watermarks it with the hook on the
digits, as `authchain model train --arch` does; a thief fine-tunes a copy without the key at
each learning rate, then embeds his own watermark (2 epochs); the owner's triggers, signature
bits and combined p-value are read from the result. Writes timm_removal.csv and
timm_removal.md to --out.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from authchain.floors import DEFAULT_FLOORS
from authchain.ml_service import attacks
from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.cli import progress_bar
from authchain.ml_service.data import load_digits_split
from authchain.ml_service.models import timm_models_allowed
from authchain.ml_service.owner import train_timm, train_with_hook
from authchain.ml_service.train import evaluate_accuracy
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.evidence import EvidenceV2, parse_evidence
from authchain.ml_service.watermark.verify import compute_carry_stats
from authchain.watermark import Watermark

EPOCHS = {"test_resnet": 4, "test_efficientnet": 6, "test_vit": 8}
"""The owner's epochs: as tests/e2e/test_timm.py trains each."""


def rewatermark(model: torch.nn.Module, name: str, size: int, epochs: int) -> torch.nn.Module:
    """The thief's own watermark on his copy, with the hook (lr 2e-3, as `--from` trains)."""
    config = {"model": name, "num_classes": 10, "in_chans": 3, "input_size": [size, size]}
    wm = Watermark(model, key=b"\xd1" * 32, arch="timm", config=config, key_seed=b"\x0d" * 32)
    train = load_digits_split(size=size)[0]
    with progress_bar(f"the thief watermarks {name}") as on_step:
        return train_with_hook(model, wm, train, epochs=epochs, lr=2e-3, seed=3, on_step=on_step)


def measure(name: str, size: int, lrs: list[float], epochs: int, out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    train, test = load_digits_split(size=size)
    with timm_models_allowed([name]):
        torch.manual_seed(0)
        owner = train_timm(
            b"\x01" * 32, out / name, model_name=name, input_size=size, epochs=EPOCHS[name],
            seed=0, spec=EmbedSpec(), key_seed=b"\x02" * 32,
        )  # fmt: skip
        loaded = load_artefact(owner.artefact)
        evidence = parse_evidence(owner.evidence.read_bytes())
        assert isinstance(evidence, EvidenceV2)
        layers = len(evidence.signature_layers)
        base = compute_carry_stats(loaded.model, [evidence])[0]
        assert owner.test_accuracy is not None
        rows.append(row(name, layers, "none", 0, base, owner.test_accuracy))
        for lr in lrs:
            started = time.perf_counter()
            tuned, _ = attacks.fine_tune(loaded.model, train, attacks.FineTune(epochs, lr))
            stolen = rewatermark(tuned, name, size, 2)
            carry = compute_carry_stats(stolen, [evidence])[0]
            rows.append(row(name, layers, f"lr {lr:g}, {epochs} ep + thief's watermark",
                            lr, carry, evaluate_accuracy(stolen, test)))  # fmt: skip
            print(f"{name} lr {lr:g}: {carry.describe()} ({time.perf_counter() - started:.0f} s)",
                  flush=True)  # fmt: skip
    return rows


def row(
    name: str, layers: int, attack: str, lr: float, carry: Any, accuracy: float
) -> dict[str, Any]:
    return {
        "model": name, "signature_layers": layers, "attack": attack, "lr": lr,
        "test_accuracy": round(accuracy, 4), "owner_triggers": carry.trigger_correct,
        "owner_bits": carry.feat_matches, "bits_read": carry.signature_bits,
        "log2_p_combined": round(carry.log2_p_value(), 1),
        "caught": carry.carries(DEFAULT_FLOORS.derivative_p_log2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/expts/timm_removal"))
    parser.add_argument("--models", nargs="+", default=list(EPOCHS))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.extend(measure(name, args.size, args.lrs, args.epochs, Path(tmp)))
    with (args.out / "timm_removal.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| model | signature layers | attack | task accuracy | owner's triggers "
        "| owner's bits | combined p | caught |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['signature_layers']} | {r['attack']} | {r['test_accuracy']:.3f} "
            f"| {r['owner_triggers']}/100 | {r['owner_bits']}/{r['bits_read']} "
            f"| 2^{r['log2_p_combined']:.0f} | {'yes' if r['caught'] else 'no'} |"
        )
    (args.out / "timm_removal.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
