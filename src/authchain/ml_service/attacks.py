"""What a thief can do to a stolen model, with our own tools: the attacks the experiments and
the attacker tests play.

Function-preserving rewrites of a `SmallResNet` (free, no data, no key):
- `permute_channels`: a consistent permutation of the channels of every layer (each conv's
  outputs with its BatchNorm, the next conv's or the classifier's inputs);
- `rescale_channels`: every channel after a ReLU multiplied by alpha > 0 (its BatchNorm's gamma
  and beta) and divided by it where it is read (the next weights' columns);
- `flip_signs`: a conv output channel negated together with its BatchNorm's gamma and mean;
- `fold_batchnorm`: every BatchNorm folded into the conv before it (the BatchNorm left as a
  bias: gamma 1, mean 0, variance 1 - eps);
- `round_weights`: re-saved in float16 or bfloat16 (the artefact loader accepts both).
Each returns a new model; its logits equal the original's up to float rounding.

Attacks that change the function (they cost data and compute): `prune`, `quantize_int8`,
`fine_tune` (optionally on noise inputs under uniform soft labels too, the classic way to
erase backdoor triggers), `fine_prune`, `distill` (a fresh model trained only on the stolen
model's soft outputs), and `informed_removal` (a thief who holds the evidence trains the
triggers and the signature away). Each training attack returns the examples it processed, so
the experiments can state its compute as a fraction of the owner's training.

This module is for research and tests; nothing in the service imports it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from authchain.ml_service.data import Dataset
from authchain.ml_service.models.resnet import BasicBlock, SmallResNet
from authchain.ml_service.watermark.evidence import (
    Evidence,
    EvidenceV1,
    KeyMaterial,
    get_feature_vector,
)
from authchain.ml_service.watermark.signature import SignatureRegulariser

# --- function-preserving rewrites ------------------------------------------------------------


@dataclass
class _Stage:
    """Where one set of channels is written (conv rows + BatchNorm) and read (weight columns)."""

    writers: list[tuple[nn.Conv2d, nn.BatchNorm2d]]
    readers: list[nn.Conv2d | nn.Linear]


def _stages(model: SmallResNet) -> Iterator[_Stage]:
    """Every set of channels of a SmallResNet that can be permuted or rescaled as one."""
    stem_conv, stem_bn = model.stem[0], model.stem[1]
    assert isinstance(stem_conv, nn.Conv2d) and isinstance(stem_bn, nn.BatchNorm2d)
    blocks = [model.layer1, model.layer2, model.layer3]
    writers: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = [(stem_conv, stem_bn)]
    for block in blocks:
        assert isinstance(block, BasicBlock)
        if not isinstance(block.shortcut, nn.Sequential):
            raise ValueError("an identity shortcut ties a block's channels to its input's")
        short_conv, short_bn = block.shortcut[0], block.shortcut[1]
        assert isinstance(short_conv, nn.Conv2d) and isinstance(short_bn, nn.BatchNorm2d)
        yield _Stage(writers, [block.conv1, short_conv])  # the stream into the block
        yield _Stage([(block.conv1, block.bn1)], [block.conv2])  # inside the block
        writers = [(block.conv2, block.bn2), (short_conv, short_bn)]
    yield _Stage(writers, [model.fc])


def _small_resnet(model: nn.Module) -> SmallResNet:
    if not isinstance(model, SmallResNet):
        raise TypeError("these rewrites are written for SmallResNet")
    return model


@torch.no_grad()
def permute_channels(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """A random consistent permutation of every layer's channels."""
    out = _small_resnet(copy.deepcopy(model))
    for stage in _stages(out):
        perm = torch.randperm(stage.writers[0][0].out_channels, generator=generator)
        for conv, bn in stage.writers:
            conv.weight.copy_(conv.weight[perm])
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                assert t is not None
                t.copy_(t[perm])
        for reader in stage.readers:
            reader.weight.copy_(reader.weight[:, perm])
    return out


@torch.no_grad()
def rescale_channels(
    model: nn.Module, generator: torch.Generator, low: float = 0.25, high: float = 4.0
) -> nn.Module:
    """Every ReLU channel scaled by a random alpha in [low, high] (log-uniform) where it is
    written, and by 1/alpha where it is read."""
    out = _small_resnet(copy.deepcopy(model))
    for stage in _stages(out):
        n = stage.writers[0][0].out_channels
        span = torch.log(torch.tensor(high / low))
        alpha = low * torch.exp(torch.rand(n, generator=generator) * span)
        for _, bn in stage.writers:
            bn.weight.mul_(alpha)
            bn.bias.mul_(alpha)
        for reader in stage.readers:
            shape = (1, n) + (1,) * (reader.weight.dim() - 2)
            reader.weight.div_(alpha.reshape(shape))
    return out


def _conv_bns(model: SmallResNet) -> Iterator[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    seen: set[int] = set()
    for stage in _stages(model):
        for conv, bn in stage.writers:
            if id(conv) not in seen:
                seen.add(id(conv))
                yield conv, bn


@torch.no_grad()
def flip_signs(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Half the conv output channels (at random) negated, with their BatchNorm's gamma and
    running mean: BN(-z) with -gamma and -mean is BN(z)."""
    out = _small_resnet(copy.deepcopy(model))
    for conv, bn in _conv_bns(out):
        sign = torch.where(torch.rand(conv.out_channels, generator=generator) < 0.5, -1.0, 1.0)
        conv.weight.mul_(sign.reshape(-1, 1, 1, 1))
        bn.weight.mul_(sign)
        bn.running_mean.mul_(sign)  # type: ignore[union-attr]
    return out


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm folded into its conv: conv rows times gamma / sigma; the BatchNorm keeps
    only the bias (gamma 1, mean 0, variance 1 - eps, so that it divides by exactly 1)."""
    out = _small_resnet(copy.deepcopy(model))
    for conv, bn in _conv_bns(out):
        assert bn.running_var is not None and bn.running_mean is not None
        sigma = torch.sqrt(bn.running_var.double() + bn.eps)
        scale = bn.weight.double() / sigma
        conv.weight.copy_(conv.weight.double() * scale.reshape(-1, 1, 1, 1))
        bn.bias.copy_(bn.bias.double() - scale * bn.running_mean.double())
        bn.weight.fill_(1.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    return out


@torch.no_grad()
def round_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The model as re-saved in `dtype` (float16 or bfloat16) and loaded back."""
    out = copy.deepcopy(model)
    for t in list(out.parameters()) + list(out.buffers()):
        if t.is_floating_point():
            t.copy_(t.to(dtype).to(t.dtype))
    return out


def all_rewrites(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Every function-preserving rewrite above, one after the other, then bfloat16."""
    rewritten = permute_channels(model, generator)
    rewritten = rescale_channels(rewritten, generator)
    rewritten = flip_signs(rewritten, generator)
    rewritten = fold_batchnorm(rewritten)
    return round_weights(rewritten, torch.bfloat16)


REWRITES: dict[str, Callable[[nn.Module, torch.Generator], nn.Module]] = {
    "permute": permute_channels,
    "rescale": rescale_channels,
    "flip_signs": flip_signs,
    "fold_batchnorm": lambda m, g: fold_batchnorm(m),
    "float16": lambda m, g: round_weights(m, torch.float16),
    "bfloat16": lambda m, g: round_weights(m, torch.bfloat16),
    "all": all_rewrites,
}
"""Each rewrite by name (the experiments' and tests' vocabulary)."""


# --- attacks that change the function --------------------------------------------------------


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]


@torch.no_grad()
def prune(model: nn.Module, fraction: float) -> nn.Module:
    """Global magnitude pruning of every conv and linear weight."""
    pruned = copy.deepcopy(model)
    weights = _weights(pruned)
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    k = int(fraction * flat.numel())
    if k > 0:
        threshold = flat.kthvalue(k).values
        for w in weights:
            w.mul_((w.abs() > threshold).to(w.dtype))
    return pruned


@torch.no_grad()
def quantize_int8(model: nn.Module) -> nn.Module:
    """Every conv and linear weight quantized to int8, symmetric per output channel, and
    dequantized (what an int8 re-save loads back as)."""
    out = copy.deepcopy(model)
    for w in _weights(out):
        scale = w.abs().reshape(len(w), -1).amax(dim=1).clamp_min(1e-12) / 127
        shape = (-1,) + (1,) * (w.dim() - 1)
        w.copy_(torch.round(w / scale.reshape(shape)).clamp(-127, 127) * scale.reshape(shape))
    return out


@dataclass(frozen=True)
class FineTune:
    """A keyless fine-tune: AdamW with a one-cycle schedule, as `train.py` trains."""

    epochs: int
    lr: float
    noise: bool = False
    """Also feed noise inputs (uniform pixels, and the 8x8 blocks triggers are made of) with
    uniform soft labels: the classic way to erase trigger watermarks."""
    seed: int = 7
    batch_size: int = 64
    noise_batch: int = 32


def _noise(generator: torch.Generator, count: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Half uniform pixels, half 8x8 blocks upsampled (the triggers' kind of noise)."""
    c, h, w = shape
    pixels = torch.rand(count - count // 2, c, h, w, generator=generator)
    blocks = torch.rand(count // 2, c, 8, 8, generator=generator)
    return torch.cat([pixels, F.interpolate(blocks, size=(h, w), mode="nearest")])


def fine_tune(
    model: nn.Module,
    data: Dataset,
    plan: FineTune,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    mask: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[nn.Module, int]:
    """A fine-tuned copy of `model` and the examples it processed. `extra_loss` is added to
    each step's loss; `mask` pairs (weight, keep) are re-applied after each step."""
    tuned = copy.deepcopy(model)
    if mask is not None:
        keep = {id(p): m for p, m in mask}
        mask = [(p, keep[id(q)]) for p, q in zip(tuned.parameters(), model.parameters(),
                                                   strict=True) if id(q) in keep]  # fmt: skip
    torch.manual_seed(plan.seed)
    generator = torch.Generator().manual_seed(plan.seed)
    optimiser = torch.optim.AdamW(tuned.parameters(), lr=plan.lr, weight_decay=1e-4)
    steps = plan.epochs * -(-len(data) // plan.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, plan.lr, total_steps=steps)
    examples = 0
    tuned.train()
    for _ in range(plan.epochs):
        order = torch.randperm(len(data), generator=generator)
        for i in range(0, len(data), plan.batch_size):
            idx = order[i : i + plan.batch_size]
            loss = F.cross_entropy(tuned(data.x[idx]), data.y[idx])
            examples += len(idx)
            if plan.noise:
                noise = _noise(generator, plan.noise_batch, tuple(data.x.shape[1:]))
                log_probs = F.log_softmax(tuned(noise), dim=1)
                loss = loss - log_probs.mean()  # cross-entropy against uniform labels
                examples += len(noise)
            if extra_loss is not None:
                loss = loss + extra_loss(tuned)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            if mask is not None:
                with torch.no_grad():
                    for p, m in mask:
                        p.mul_(m)
    tuned.eval()
    return tuned, examples


def fine_prune(
    model: nn.Module, data: Dataset, fraction: float, plan: FineTune
) -> tuple[nn.Module, int]:
    """Magnitude pruning, then a fine-tune that keeps the pruned weights at zero."""
    pruned = prune(model, fraction)
    mask = [(w, (w != 0).to(w.dtype)) for w in _weights(pruned)]
    return fine_tune(pruned, data, plan, mask=mask)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: Dataset,
    epochs: int,
    lr: float = 3e-3,
    temperature: float = 4.0,
    seed: int = 11,
) -> tuple[nn.Module, int]:
    """`student` (fresh) trained only on `teacher`'s soft outputs over the training inputs;
    the examples processed (each teacher forward counted as a third of a training example)."""
    teacher = copy.deepcopy(teacher).eval()
    with torch.no_grad():
        targets = F.softmax(teacher(data.x) / temperature, dim=1)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    batch = 64
    steps = epochs * -(-len(data) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=steps)
    student.train()
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for i in range(0, len(data), batch):
            idx = order[i : i + batch]
            log_probs = F.log_softmax(student(data.x[idx]) / temperature, dim=1)
            loss = F.kl_div(log_probs, targets[idx], reduction="batchmean") * temperature**2
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
    student.eval()
    return student, epochs * len(data) + len(data) // 3


def informed_removal(
    model: nn.Module, evidence: Evidence, data: Dataset, plan: FineTune
) -> tuple[nn.Module, int]:
    """The thief holds the evidence (so the key): he fine-tunes with the owner's triggers
    labelled uniformly (their key labels unlearned) and the owner's signature pulled to the
    opposite bits, while keeping the task."""
    key = KeyMaterial.from_evidence(evidence)
    triggers = key.trigger_inputs().to(torch.float32)
    holder: dict[str, Callable[[], torch.Tensor]] = {}

    def unlearn(tuned: nn.Module) -> torch.Tensor:
        if "signature" not in holder:  # built on the copy fine_tune trains
            holder["signature"] = _flipped_signature(tuned, evidence, key)
        log_probs = F.log_softmax(tuned(triggers), dim=1)
        return -log_probs.mean() + holder["signature"]()

    tuned, examples = fine_tune(model, data, plan, extra_loss=unlearn)
    steps = plan.epochs * -(-len(data) // plan.batch_size)
    return tuned, examples + steps * len(triggers)


def _flipped_signature(
    model: nn.Module, evidence: Evidence, key: KeyMaterial
) -> Callable[[], torch.Tensor]:
    if isinstance(evidence, EvidenceV1):
        weight = dict(model.named_parameters())[evidence.feature_layer]
        flipped = 1 - key.signature()

        def uchida() -> torch.Tensor:
            w = get_feature_vector(weight)
            projection = key.projection(w.numel()).to(w.dtype)
            return F.binary_cross_entropy_with_logits(projection @ w, flipped.to(w.dtype))

        return uchida
    keys = key.signature_keys()
    for k in keys:
        k.bits = 1 - k.bits  # the opposite side of every readout
    hinge = SignatureRegulariser(model, keys, margin=3.0)
    return lambda: 2.0 * hinge()
