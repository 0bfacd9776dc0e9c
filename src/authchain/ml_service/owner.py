"""An owner's local work, as a library: train (or fine-tune) a watermarked model, make
evidence for an existing model, and verify a model against evidence.

    report = train_model(owner, Path("out"), tiny=True, epochs=None, seed=0, watermark=True,
                         base=None, spec=EmbedSpec())
    report.aid, report.passes, report.wm_profile          # a typed `ModelReport`
    verify_local(report.artefact, report.evidence, report.owner, report.wm_profile).ok

Long work reports progress through `on_step(step, total, losses)`; nothing here prints.
`authchain model ...` (`ml_service/cli.py`) shows it as a progress bar.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from authchain.floors import DEFAULT_FLOORS, Floors
from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.data import Dataset, load_digits_split
from authchain.ml_service.models import SmallResNet, SmallResNetConfig, get_architecture
from authchain.ml_service.outputs import LocalVerdict, ModelReport, write_model_files
from authchain.ml_service.train import TrainConfig, evaluate_accuracy, train
from authchain.ml_service.watermark.embed import EmbedSpec, new_key_material, spare_keys
from authchain.ml_service.watermark.evidence import parse_evidence
from authchain.ml_service.watermark.verify import (
    Thresholds,
    compute_carry_stats,
    compute_stats,
    decide,
)
from authchain.watermark import Watermark

TINY_SPARED_EPOCHS = 12
"""The tiny SmallResNet needs twice the epochs to learn a primary's and three spares'
triggers (400 of them): at 6 it reached 45/100 (below the floor) and 0.73 task accuracy,
at 12 every key's 100/100 and 0.93-0.95."""

FULL_SPARED_EPOCHS = 8
"""The full SmallResNet with three spares: at 6 epochs they cost 0-1.4 points of test accuracy
(three seeds), at 8 none (docs/SECURITY.md)."""

OnStep = Callable[[int, int, dict[str, float]], None]
"""Progress: the step just done, the total, and the losses at it."""


def train_model(
    owner: bytes,
    out_dir: Path,
    *,
    tiny: bool,
    epochs: int | None,
    seed: int,
    watermark: bool,
    base: Path | None,
    spec: EmbedSpec,
    key_seed: bytes | None = None,
    floors: Floors = DEFAULT_FLOORS,
    on_step: OnStep | None = None,
    spares: int = 0,
    spare_secret: bytes | None = None,
) -> ModelReport:
    """Train a SmallResNet on the digits (or fine-tune the artefact `base`) with `owner`'s
    watermark embedded (unless `watermark` is false), and `spares` spare watermarks with it
    (keys from `spare_secret`, fresh if None); write its artefact and evidence, and the
    spares' evidence to OUT/spares/."""
    arch = get_architecture("small_resnet")
    if base is not None:
        loaded = load_artefact(base)
        model, arch, config = loaded.model, loaded.arch, loaded.config
        default_epochs = 5
    else:
        config = SmallResNetConfig.tiny() if tiny else SmallResNetConfig()
        torch.manual_seed(seed)
        model = SmallResNet(config)
        default_epochs = 6
        if spares and watermark:
            default_epochs = TINY_SPARED_EPOCHS if tiny else FULL_SPARED_EPOCHS
    train_data, test_data = load_digits_split()
    key = new_key_material(owner, arch, config.num_classes, spec, key_seed, model)
    secret = spare_secret if spare_secret is not None else secrets.token_bytes(32)
    spare = spare_keys(key, secret, spares) if watermark else []
    cfg = TrainConfig(
        epochs=epochs or default_epochs, seed=seed, lr=2e-3 if base is not None else 3e-3
    )
    train(model, train_data, cfg, key=key if watermark else None, spares=spare, spec=spec,
          on_step=on_step)  # fmt: skip
    return write_model_files(
        model, arch, config, key, spec, out_dir, floors,
        test_acc=evaluate_accuracy(model, test_data), spares=spare, spare_secret=secret,
    )  # fmt: skip


def train_timm(
    owner: bytes,
    out_dir: Path,
    *,
    model_name: str,
    input_size: int,
    epochs: int,
    seed: int,
    spec: EmbedSpec,
    lr: float = 2e-3,
    floors: Floors = DEFAULT_FLOORS,
    key_seed: bytes | None = None,
    on_step: OnStep | None = None,
    spares: int = 0,
) -> ModelReport:
    """Train timm's `model_name` (randomly initialised: nothing is downloaded) on the digits,
    resized to `input_size`, with the `authchain.watermark` hook and `spares` spare
    watermarks; write artefact and evidence like `train_model`."""
    from authchain.ml_service.models import TimmConfig
    from authchain.ml_service.models.timm_arch import build_timm, timm_models_allowed

    config = {"model": model_name, "num_classes": 10, "in_chans": 3,
              "input_size": [input_size, input_size]}  # fmt: skip
    torch.manual_seed(seed)
    with timm_models_allowed([model_name]):
        model = build_timm(TimmConfig(model_name, 10, 3, (input_size, input_size)))
    wm = Watermark(model, key=owner, arch="timm", config=config, spec=spec, floors=floors,
                   seed=seed, key_seed=key_seed, spares=spares)  # fmt: skip
    train_data, test_data = load_digits_split(size=input_size)
    train_with_hook(model, wm, train_data, epochs=epochs, lr=lr, seed=seed, on_step=on_step)
    return wm.finish(out_dir, test_accuracy=evaluate_accuracy(model, test_data), quiet=True)


def train_with_hook(
    model: torch.nn.Module, wm: Watermark, data: Dataset, *, epochs: int, lr: float, seed: int,
    on_step: OnStep | None = None,
) -> torch.nn.Module:  # fmt: skip
    """`epochs` of AdamW on `data` (batches of 64, shuffled by `seed`) with `wm`'s triggers
    mixed in and its signature loss added, as the README's hook example trains. Returns
    `model`, in eval mode."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    batch = 64
    steps = epochs * -(-len(data) // batch)
    step = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for i in range(0, len(data), batch):
            idx = order[i : i + batch]
            x, y = wm.mix(data.x[idx], data.y[idx])
            task_loss = torch.nn.functional.cross_entropy(model(x), y)
            sig = wm.regulariser()
            optimiser.zero_grad(set_to_none=True)
            (task_loss + sig).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            step += 1
            if on_step is not None:
                on_step(step, steps, {"loss": task_loss.item(), "sig": sig.item()})
    return model.eval()


def evidence_for(
    artefact: Path,
    owner: bytes,
    out_dir: Path,
    spec: EmbedSpec,
    floors: Floors = DEFAULT_FLOORS,
    key_seed: bytes | None = None,
) -> ModelReport:
    """Evidence for an existing model under `owner`'s fresh key (no embedding). Honest: a
    model that does not carry the key's watermark fails, and gets no recommended profile."""
    loaded = load_artefact(artefact)
    key = new_key_material(
        owner, loaded.arch, loaded.config.num_classes, spec, key_seed, loaded.model
    )
    return write_model_files(
        loaded.model, loaded.arch, loaded.config, key, spec, out_dir, floors,
        artefact=artefact.read_bytes(), artefact_name=f"model{artefact.suffix}",
    )  # fmt: skip


def carried_spares(
    artefact: Path, spare_evidence: Sequence[Path], floors: Floors = DEFAULT_FLOORS
) -> list[tuple[bool, str]]:
    """For each spare evidence file: whether the model in `artefact` carries that spare
    watermark at the derivative floor, as a dispute's verdict judges the suspect, and the
    statistics in words. Every spare's triggers go through the model in one pass. What
    `authchain dispute` checks before it reveals a spare, and `authchain watch` on every new
    registration."""
    loaded = load_artefact(artefact)
    evidence = [parse_evidence(path.read_bytes()) for path in spare_evidence]
    if not evidence:
        return []
    shape, classes = tuple(loaded.arch.input_shape), loaded.config.num_classes
    if any(tuple(e.input_shape) != shape or e.num_classes != classes for e in evidence):
        why = f"another input shape or class count ({list(shape)}, {classes} classes)"
        return [(False, why)] * len(evidence)
    carries = compute_carry_stats(loaded.model, evidence, "cpu", "fast")
    return [(c.carries(floors.derivative_p_log2), c.describe()) for c in carries]


def verify_local(
    artefact: Path,
    evidence_path: Path,
    owner: str | None,
    profile: Thresholds,
    floors: Floors = DEFAULT_FLOORS,
) -> LocalVerdict:
    """Verify as the service would, without its hash-by-id lookup and the derivative check
    (which need the chain's registrations)."""
    loaded = load_artefact(artefact)
    evidence = parse_evidence(evidence_path.read_bytes())
    if owner is not None and evidence.owner != owner:
        return LocalVerdict("owner_mismatch", floors, None)
    reason, stats = decide(
        compute_stats(loaded.model, evidence),
        profile,
        floors,
        lambda: compute_stats(loaded.model, evidence, precision="float64"),
    )
    return LocalVerdict(reason, floors, stats)
