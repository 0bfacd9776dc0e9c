"""A model's function sketch: what registration's derivative check uses to pick which earlier
registration to check exactly, so that its cost does not grow with the chain.

The sketch is a 1024-bit SimHash of what the model computes, not of its weights: the centred
log-softmax outputs on `SKETCH_PROBES` public smooth images (derived from the input shape
alone), each mixed down to `CLASS_MIX` values by a public matrix (so a 1000-class model costs
what a 10-class one does), then projected on `SKETCH_BITS` public directions, one bit per sign.

Two models that compute the same function have the same sketch, so a function-preserving
rewrite (a channel permutation, a rescaling, folded BatchNorm, flipped signs) leaves it as it
is. A fine-tune moves it some way: the test suite's fine-tunes, overwrites and rewritten,
re-watermarked copies differ from the original in 0.15 to 0.35 of the bits. Models trained
apart for the same task differ in 0.23 to 0.46 (random strings: 0.5; the nearest of 100,000
random sketches: about 0.43), so a copy is not always nearer than every stranger: what the
nearest check misses, a dispute catches (docs/SECURITY.md).

The owner declares the sketch in the registration (`EvidenceRef.sketch`); V_auth recomputes it
and refuses a claim whose declared bits disagree with the artefact (`sketch_mismatch`). The
chain then checks the claim exactly against the `DERIVATIVE_NEIGHBOURS` earlier
registration(s) with the nearest sketch (`chain/state.py`), which it finds from state alone.

A bit whose value is within `SKETCH_MARGIN` of zero (relative to the largest) is not decided by
it: either sign is accepted for it. Float32 rounding on any device moves a value by about 1e-6
of that scale, so rounding that differs between validators (threads, CPU or GPU) cannot split
them, and a declarer can choose only the bits that sit on zero anyway.
"""

from __future__ import annotations

import functools
from pathlib import Path

import blake3
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from authchain.ml_service.watermark.verify import run_chunked
from authchain.wire import SKETCH_BYTES

SKETCH_BITS = SKETCH_BYTES * 8
SKETCH_PROBES = 64
PROBE_GRID = 4
CLASS_MIX = 16
SKETCH_MARGIN = 1e-3
"""A sketch value within this fraction of the largest |value| of zero decides no bit."""
_DOMAIN = "authchain/sketch/v1"


def _xof(label: str, length: int) -> bytes:
    return blake3.blake3(f"{_DOMAIN}/{label}".encode()).digest(length=length)


def probe_inputs(input_shape: tuple[int, ...]) -> torch.Tensor:
    """`SKETCH_PROBES` public smooth images in [0, 1] for `input_shape`, float64: a
    `PROBE_GRID`² grid of random values, bilinearly upsampled. Unlike the triggers' sharp
    blocks, which every watermark (and every overwrite) trains on, smooth images are inputs
    that embedding a watermark leaves mostly alone, so a copy's sketch stays near."""
    c, h, w = input_shape
    raw = np.frombuffer(_xof(f"inputs/{c}", SKETCH_PROBES * c * PROBE_GRID**2), dtype=np.uint8)
    grid = torch.from_numpy(raw.astype(np.float64) / 255.0).reshape(
        SKETCH_PROBES, c, PROBE_GRID, PROBE_GRID
    )
    return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)


def _uniform(label: str, rows: int, cols: int) -> torch.Tensor:
    """rows × cols public values uniform in [-1, 1), float64."""
    raw = np.frombuffer(_xof(label, 4 * rows * cols), dtype="<u4")
    return torch.from_numpy(raw.astype(np.float64) / 2**31 - 1.0).reshape(rows, cols)


@functools.lru_cache(maxsize=16)
def _class_mix(num_classes: int) -> torch.Tensor:
    return _uniform(f"classes/{num_classes}", num_classes, CLASS_MIX)


@functools.lru_cache(maxsize=1)
def _projection() -> torch.Tensor:
    return _uniform("projection", SKETCH_PROBES * CLASS_MIX, SKETCH_BITS)


def sketch_values(
    model: nn.Module, input_shape: tuple[int, ...], num_classes: int, device: str = "cpu"
) -> torch.Tensor:
    """The `SKETCH_BITS` projections whose signs are the sketch: `model` (in eval mode) runs in
    float32 on `device`, the rest in float64 on the CPU."""
    inputs = probe_inputs(input_shape).to(device=device, dtype=torch.float32)
    logits = run_chunked(model.eval(), inputs, num_classes).cpu().double()
    outputs = F.log_softmax(logits, dim=1)
    outputs = outputs - outputs.mean(dim=1, keepdim=True)
    return (outputs @ _class_mix(num_classes)).flatten() @ _projection()


def sketch_bytes(values: torch.Tensor) -> bytes:
    """The sketch: bit i (most significant first) is set where value i is positive."""
    return np.packbits((values > 0).numpy().astype(np.uint8)).tobytes()


def unpack(sketch: bytes) -> np.ndarray:
    """A sketch's `SKETCH_BITS` bits (ValueError if it is not `SKETCH_BYTES` long)."""
    if len(sketch) != SKETCH_BYTES:
        raise ValueError(f"a sketch is {SKETCH_BYTES} bytes, not {len(sketch)}")
    return np.unpackbits(np.frombuffer(sketch, dtype=np.uint8)).astype(bool)


def mismatched_bits(values: torch.Tensor, declared: bytes) -> list[int]:
    """The bits `declared` gets wrong among those the values decide (beyond the margin)."""
    bits = unpack(declared)
    magnitude = values.abs()
    decided = magnitude > SKETCH_MARGIN * float(magnitude.max())
    wrong = (values > 0).numpy() != bits
    return [int(i) for i in np.flatnonzero(wrong & decided.numpy())]


def model_sketch(model: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> bytes:
    """What an owner declares for `model` (computed on the CPU)."""
    return sketch_bytes(sketch_values(model, input_shape, num_classes))


def hamming(a: bytes, b: bytes) -> int:
    """Bits in which two sketches differ."""
    return int(np.count_nonzero(unpack(a) != unpack(b)))


def artefact_sketch(path: Path) -> bytes:
    """The sketch of the artefact file at `path` (loaded safely: `load_artefact`)."""
    from authchain.ml_service.artefact import load_artefact  # the loader imports the models

    loaded = load_artefact(path)
    return model_sketch(loaded.model, tuple(loaded.arch.input_shape), loaded.config.num_classes)
