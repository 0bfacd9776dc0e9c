"""The `multi_factor_v2` weight signature: bits read from what a function-preserving transform
cannot change.

A thief can rewrite a network's weights without changing its function at all: permute the
channels of any layer (with its BatchNorm and the next layer's inputs), rescale a channel by
alpha > 0 before a ReLU and by 1/alpha after it, fold a BatchNorm into the convolution before it
(which rescales each output channel, by a negative factor where gamma < 0), or flip the sign of
a convolution's output channel together with its BatchNorm. `multi_factor_v1` read its bits
from one layer's filters averaged over output channels, in stored order, and such a rewrite
took them to chance. Here the bits are read from what every one of these rewrites leaves alone.

Each spatial kernel K[o, i] (a conv weight's k x k slice from input channel i to output channel
o) is average-pooled to 3 x 3 (pooling is linear, so it commutes with all of the above) and
replaced by its *shape*: the 45 entries of u u^T - I/9 on and above the diagonal (off-diagonal
ones times sqrt 2), where u = K / |K| (0 for a zero kernel). Every rewrite above multiplies a
kernel by a non-zero number, which u u^T does not see, and permutes the kernels' rows and
columns. So the bits are read from statistics that do not depend on the order of rows or
columns either: with Q[o, i] the shapes, G[o] = mean_i Q[o, i] (an output channel's
descriptor) and H[i] = mean_o Q[o, i] (an input channel's), bit j of a layer is

    f_j = mean over (o, i) of (Q[o, i] . a_j) (G[o] . c_j) (H[i] . e_j)  >  0

for key-derived directions a_j, c_j, e_j in R^45. Summing over (o, i) makes f_j blind to any
permutation of the rows and of the columns; the shapes make it blind to every rescaling. Re-saving
in float16 or bfloat16 moves f_j by the rounding only, well inside the margin the embedding
leaves. The three factors tie each kernel to its row and its column, so a layer offers
thousands of nearly independent directions (measured: this reads several times more bits
through a thief's overwrite than the mean shape of the kernels, or products over rows alone).

Under the null (a model fixed without the key) the readout is a fixed function of the model
and the directions, and the bits come from a separate key stream: each matches with chance
exactly 1/2, independently. The key owner embeds by pulling every f_j to its bit's side with a
margin (`SignatureRegulariser`). Everything is computed in float64 on the CPU when verifying.

This module imports nothing from `chain` or `gateway`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

KERNEL = 3
"""Every spatial kernel is average-pooled to KERNEL x KERNEL before its shape is taken."""
SHAPE_DIM = KERNEL**2 * (KERNEL**2 + 1) // 2
"""Entries of a kernel's shape (45)."""
MAX_SIGNATURE_LAYERS = 64
"""Most layers one signature is spread over."""
CHUNK_KERNELS = 4096
"""Kernels whose shapes `kernel_shapes` computes in one step."""


def is_spatial(param: torch.Tensor) -> bool:
    """A conv weight [out, in, kh, kw] with more than one tap per kernel."""
    return param.dim() == 4 and param.shape[2] * param.shape[3] > 1


def spatial_layers(model: nn.Module) -> list[str]:
    """The names of `model`'s spatial conv weights, in `named_parameters` order, at most
    MAX_SIGNATURE_LAYERS of them (evenly spaced when there are more)."""
    names = [name for name, p in model.named_parameters() if is_spatial(p)]
    if len(names) <= MAX_SIGNATURE_LAYERS:
        return names
    step = len(names) / MAX_SIGNATURE_LAYERS
    return [names[int(i * step)] for i in range(MAX_SIGNATURE_LAYERS)]


def allocate_bits(total: int, layers: int) -> list[int]:
    """`total` bits over `layers` layers, as evenly as possible (the first ones get the
    remainder). Early layers are small but keep their bits best under fine-tuning; late ones
    are large but drift (docs/architecture.md has the measurements)."""
    if layers < 1:
        raise ValueError("a signature needs at least one layer")
    base, extra = divmod(total, layers)
    return [base + (i < extra) for i in range(layers)]


def kernel_shapes(weight: torch.Tensor) -> torch.Tensor:
    """Q: [out, in, 45], the shape u u^T - I/9 of every kernel pooled to 3 x 3 (0 for a zero
    kernel), on and above the diagonal, off-diagonal entries times sqrt 2 (so that the inner
    product of two shapes is that of the matrices). Without gradients, computed CHUNK_KERNELS
    kernels at a time, which keeps each step in cache (3x faster on a 512 x 512 layer) and
    gives the same values element by element."""
    if weight.requires_grad and torch.is_grad_enabled():
        return _shapes(weight)  # embedding: autograd keeps every step's tensors anyway
    out_ch, in_ch = weight.shape[:2]
    step = max(1, CHUNK_KERNELS // in_ch)
    shapes = weight.new_empty(out_ch, in_ch, SHAPE_DIM)
    for i in range(0, out_ch, step):
        shapes[i : i + step] = _shapes(weight[i : i + step])
    return shapes


def _shapes(weight: torch.Tensor) -> torch.Tensor:
    out_ch, in_ch, kh, kw = weight.shape
    kernels = weight.reshape(out_ch * in_ch, 1, kh, kw)
    if (kh, kw) != (KERNEL, KERNEL):
        kernels = F.adaptive_avg_pool2d(kernels, KERNEL)
    flat = kernels.reshape(out_ch, in_ch, KERNEL * KERNEL)
    norm = flat.norm(dim=2, keepdim=True)
    nonzero = norm > 0
    unit = torch.where(nonzero, flat / torch.where(nonzero, norm, torch.ones_like(norm)), 0.0)
    rows, cols = _triu(weight.device)
    scale = torch.where(rows == cols, 1.0, math.sqrt(2.0)).to(weight.dtype)
    centre = (rows == cols).to(weight.dtype) / (KERNEL * KERNEL)
    shapes = unit[:, :, rows] * unit[:, :, cols] * scale - centre
    return torch.where(nonzero, shapes, 0.0)


def _triu(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.triu_indices(KERNEL * KERNEL, KERNEL * KERNEL, device=device)
    return index[0], index[1]


def readout(
    weight: torch.Tensor, a: torch.Tensor, c: torch.Tensor, e: torch.Tensor
) -> torch.Tensor:
    """f: [n], one value per bit (see the module docstring); differentiable in `weight`.
    a, c, e: [n, 45] in the weight's dtype and device."""
    return LayerSummary.of(kernel_shapes(weight)).readout(a, c, e)


def readout_shapes(
    shapes: torch.Tensor, a: torch.Tensor, c: torch.Tensor, e: torch.Tensor
) -> torch.Tensor:
    """f from a layer's kernel shapes ([out, in, 45], `kernel_shapes`), kernel by kernel."""
    out_ch, in_ch, _ = shapes.shape
    by_row = shapes.mean(dim=1) @ c.T  # [out, n]
    by_col = shapes.mean(dim=0) @ e.T  # [in, n]
    by_kernel = shapes @ a.T  # [out, in, n]
    per_row = torch.einsum("oin,in->on", by_kernel, by_col)  # summed over inputs first
    return (per_row * by_row).sum(dim=0) / (out_ch * in_ch)


def layer_moments(shapes: torch.Tensor) -> torch.Tensor:
    """M: [45, 45, 45], M[q, p, r] = mean over (o, i) of Q[o,i,q] G[o,p] H[i,r]: everything a
    layer's bits are read from (f_j = M contracted with a_j, c_j and e_j), computed once per
    model however many signatures are read from it. Cost: out x in x 45^2."""
    out_ch, in_ch, _ = shapes.shape
    by_row, by_col = shapes.mean(dim=1), shapes.mean(dim=0)  # G [out, 45], H [in, 45]
    inner = torch.einsum("oiq,ir->oqr", shapes, by_col)  # summed over inputs: [out, 45, 45]
    return torch.einsum("op,oqr->qpr", by_row, inner) / (out_ch * in_ch)


def readout_moments(
    moments: torch.Tensor, a: torch.Tensor, c: torch.Tensor, e: torch.Tensor
) -> torch.Tensor:
    """f from a layer's moments (`layer_moments`): 45^3 multiply-adds per bit."""
    by_a = torch.einsum("nq,qpr->npr", a, moments)
    return ((by_a * c.unsqueeze(2)).sum(dim=1) * e).sum(dim=1)


class LayerSummary:
    """What a layer's bits are read from: its kernel shapes when it has at most 45^2 kernels,
    else its moments (`layer_moments`). The two sums are equal; this takes the cheaper, per
    bit 45 multiply-adds per kernel against 45^3, and every validator takes the same one."""

    def __init__(self, tensor: torch.Tensor, by_moments: bool) -> None:
        self.tensor, self.by_moments = tensor, by_moments

    @classmethod
    def of(cls, shapes: torch.Tensor) -> LayerSummary:
        out_ch, in_ch, _ = shapes.shape
        if out_ch * in_ch <= SHAPE_DIM**2:
            return cls(shapes, by_moments=False)
        return cls(layer_moments(shapes), by_moments=True)

    def readout(self, a: torch.Tensor, c: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if self.by_moments:
            return readout_moments(self.tensor, a, c, e)
        return readout_shapes(self.tensor, a, c, e)


class SignatureKey:
    """One layer's share of a signature: its directions and its bits (float64, CPU)."""

    def __init__(self, name: str, a: torch.Tensor, c: torch.Tensor, e: torch.Tensor,
                 bits: torch.Tensor) -> None:  # fmt: skip
        self.name, self.a, self.c, self.e, self.bits = name, a, c, e, bits

    def __len__(self) -> int:
        return len(self.bits)

    def values(self, summary: LayerSummary) -> torch.Tensor:
        """f for this layer's bits from its float64 summary (`float64_summaries`)."""
        return summary.readout(self.a, self.c, self.e)

    def matches(self, summary: LayerSummary) -> int:
        """How many of the bits sign(f) reproduces."""
        read = (self.values(summary) > 0).to(torch.float64)
        return int((read == self.bits).sum().item())


def float64_summaries(model: nn.Module, names: Sequence[str]) -> dict[str, LayerSummary]:
    """The summaries of those of `names` that `model` has as spatial weights, in float64 on
    the CPU: how validators read a signature, whatever device the model runs on."""
    params = dict(model.named_parameters())
    return {
        name: weight_summary(params[name])
        for name in names
        if name in params and is_spatial(params[name])
    }


def weight_summary(weight: torch.Tensor) -> LayerSummary:
    """One weight's summary, in float64 on the CPU."""
    return LayerSummary.of(kernel_shapes(weight.detach().to(device="cpu", dtype=torch.float64)))


def count_matches(
    summaries: dict[str, LayerSummary], keys: Sequence[SignatureKey]
) -> tuple[int, int]:
    """(matching bits, bits read) over the layers of `keys` found in `summaries`; a layer the
    model lacks, or has in another form, is not read."""
    matches = read = 0
    for key in keys:
        if key.name in summaries:
            matches += key.matches(summaries[key.name])
            read += len(key)
    return matches, read


class SignatureRegulariser:
    """The embedding loss: a hinge that pulls every f_j to its bit's side by `margin` times
    the spread f had over the bits when embedding began (so that one margin suits every layer
    and model)."""

    def __init__(self, model: nn.Module, keys: Sequence[SignatureKey], margin: float) -> None:
        params = dict(model.named_parameters())
        self.keys = list(keys)
        self.margin = margin
        self._params = [params[k.name] for k in self.keys]
        self._scale = []
        for key, param in zip(self.keys, self._params, strict=True):
            spread = float(key.values(weight_summary(param)).std()) if len(key) > 1 else 0.0
            self._scale.append(spread if spread > 0 else 1e-6)
        self._cache: dict[tuple[torch.device, torch.dtype], list[tuple[torch.Tensor, ...]]] = {}

    def _tensors(self, device: torch.device, dtype: torch.dtype) -> list[tuple[torch.Tensor, ...]]:
        found = self._cache.get((device, dtype))
        if found is None:
            found = [
                tuple(t.to(device=device, dtype=dtype) for t in (k.a, k.c, k.e, 2 * k.bits - 1))
                for k in self.keys
            ]
            self._cache = {(device, dtype): found}
        return found

    def __call__(self) -> torch.Tensor:
        """The mean hinge over the layers (0 once every bit sits beyond the margin)."""
        first = self._params[0]
        tensors = self._tensors(first.device, first.dtype)
        total = first.new_zeros(())
        for param, scale, (a, c, e, sign) in zip(self._params, self._scale, tensors, strict=True):
            f = readout(param, a, c, e)
            total = total + F.relu(self.margin - sign * f / scale).mean()
        return total / len(self.keys)
