"""Training a model on the digits, with or without the watermark.

Each step takes a batch of digits and, when watermarking, a batch of trigger images with their
key-derived labels, plus the signature regulariser (`embed.signature_regulariser`):

    loss = CE(digits + triggers) + signature_weight · hinge(signature readouts, bits)

Training is seeded (`TrainConfig.seed`), so the same command gives the same model on the same
machine. `on_step(step, total, metrics)` is how the CLI draws its progress bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from authchain.ml_service.data import Dataset
from authchain.ml_service.watermark.embed import EmbedSpec, combined_regulariser
from authchain.ml_service.watermark.evidence import KeyMaterial

StepCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule."""

    epochs: int = 6
    batch_size: int = 64
    trigger_batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` on `data` (eval mode)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        logits = model(data.x[i : i + batch_size])
        correct += int((logits.argmax(1) == data.y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(data), 1)


def train(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    key: KeyMaterial | None = None,
    spares: Sequence[KeyMaterial] = (),
    spec: EmbedSpec | None = None,
    on_step: StepCallback | None = None,
) -> nn.Module:
    """Train `model` in place on `data`; embed the watermark of `key` if given, and those of
    the `spares` with it (each key's triggers join the batches, each signature's hinge the
    loss)."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    spec = spec or EmbedSpec()
    triggers = labels = regulariser = None
    trigger_batch = config.trigger_batch
    if key is not None:
        keys = [key, *spares]
        trigger_batch *= len(keys)  # each key's triggers as often as a lone key's
        triggers = torch.cat([k.trigger_inputs().to(torch.float32) for k in keys])
        labels = torch.cat([k.trigger_labels() for k in keys])
        regulariser = combined_regulariser(model, keys, spec)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, -(-len(data) // config.batch_size))
    total = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=total)
    model.train()
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(len(data), generator=generator)
        for i in range(0, len(data), config.batch_size):
            idx = order[i : i + config.batch_size]
            x, y = data.x[idx], data.y[idx]
            if triggers is not None and labels is not None:
                pick = torch.randint(len(triggers), (trigger_batch,), generator=generator)
                x, y = torch.cat([x, triggers[pick]]), torch.cat([y, labels[pick]])
            loss = F.cross_entropy(model(x), y)
            parts = {"loss": loss.item()}
            if regulariser is not None:
                sig = regulariser()
                loss = loss + sig
                parts["sig"] = sig.item()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            scheduler.step()
            step += 1
            if on_step is not None:
                on_step(step, total, parts)
    model.eval()
    return model
