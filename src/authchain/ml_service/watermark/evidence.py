"""`multi_factor_v1` evidence and the key material derived from it.

The evidence file is what an owner discloses to validators so they can check the watermark:

    {"scheme_id": "multi_factor_v1", "version": 1,
     "owner": <account id hex>, "key_seed": <32 bytes hex>,
     "arch": "small_resnet", "num_classes": 10, "input_shape": [3, 32, 32],
     "trigger_count": 100, "signature_bits": 128, "feature_layer": "layer3.conv2.weight",
     "probe_count": 32, "reference_logits": [[...10 floats...], ... 32 rows]}

Everything secret-looking is *derived*, never stored: trigger inputs and labels, the feature
projection, the signature bits and the probe inputs all come from BLAKE3 in keyed XOF mode
under `master = BLAKE3("authchain/multi_factor_v1/master" || owner || key_seed)`. Binding the
owner into the master key is what stops evidence being re-targeted: change `owner` and every
trigger, label and bit changes, so the model no longer matches. Only `reference_logits` are
measured (from the model, at embedding time); they commit to the exact function the owner
registered.

Derivation uses BLAKE3 bytes rather than a library RNG, so every validator gets identical
values whatever its numpy or torch version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import blake3
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch.nn import functional as F

from authchain.ml_service.errors import EvidenceError

SCHEME_ID = "multi_factor_v1"
_MASTER_DOMAIN = b"authchain/multi_factor_v1/master"
_HEX64 = r"^[0-9a-f]{64}$"
TRIGGER_GRID = 8
"""Triggers and probes are 8×8 noise upsampled to the input size: shapes a network can learn."""


class Evidence(BaseModel):
    """The parsed evidence file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme_id: Literal["multi_factor_v1"]
    version: Literal[1] = 1
    owner: str = Field(pattern=_HEX64)
    key_seed: str = Field(pattern=_HEX64)
    arch: str = Field(min_length=1, max_length=64)
    num_classes: int = Field(ge=2, le=4096)
    input_shape: tuple[int, int, int]
    trigger_count: int = Field(ge=1, le=4096)
    signature_bits: int = Field(ge=1, le=4096)
    feature_layer: str = Field(min_length=1, max_length=256)
    probe_count: int = Field(ge=1, le=1024)
    reference_logits: list[list[float]]

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if not all(0 < v <= 1024 for v in value):
            raise ValueError("input_shape entries must be in 1..1024")
        return value

    @model_validator(mode="after")
    def _logits(self) -> Evidence:
        rows = self.reference_logits
        if len(rows) != self.probe_count or any(len(r) != self.num_classes for r in rows):
            raise ValueError("reference_logits must be probe_count rows of num_classes values")
        if not all(math.isfinite(v) for r in rows for v in r):
            raise ValueError("reference_logits must be finite")
        return self

    def to_bytes(self) -> bytes:
        """The evidence file's bytes (its BLAKE3 is the `evidence_hash`)."""
        return self.model_dump_json(indent=1).encode() + b"\n"


def parse_evidence(data: bytes) -> Evidence:
    """Evidence from file bytes; EvidenceError naming the bad field."""
    try:
        return Evidence.model_validate_json(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(str(p) for p in e["loc"]) or "evidence"
        raise EvidenceError("corrupt_evidence", f"evidence {field}: {e['msg']}") from None


@dataclass(frozen=True)
class KeyMaterial:
    """Everything derived from (owner, key_seed) for one evidence shape."""

    owner: bytes
    key_seed: bytes
    input_shape: tuple[int, int, int]
    num_classes: int
    trigger_count: int
    signature_bits: int
    probe_count: int

    @classmethod
    def from_evidence(cls, ev: Evidence) -> KeyMaterial:
        return cls(
            bytes.fromhex(ev.owner),
            bytes.fromhex(ev.key_seed),
            ev.input_shape,
            ev.num_classes,
            ev.trigger_count,
            ev.signature_bits,
            ev.probe_count,
        )

    @cached_property
    def master(self) -> bytes:
        return blake3.blake3(_MASTER_DOMAIN + self.owner + self.key_seed).digest()

    def derive(self, label: str, length: int) -> bytes:
        """`length` bytes of the keyed BLAKE3 XOF for `label`."""
        return blake3.blake3(label.encode(), key=self.master).digest(length=length)

    def _images(self, label: str, count: int) -> torch.Tensor:
        c, h, w = self.input_shape
        raw = np.frombuffer(self.derive(label, count * c * TRIGGER_GRID**2), dtype=np.uint8)
        grid = torch.from_numpy(raw.astype(np.float64) / 255.0).reshape(
            count, c, TRIGGER_GRID, TRIGGER_GRID
        )
        return F.interpolate(grid, size=(h, w), mode="nearest")

    def trigger_inputs(self) -> torch.Tensor:
        """K key-derived trigger images in [0, 1], float64."""
        return self._images("trigger/inputs", self.trigger_count)

    def trigger_labels(self) -> torch.Tensor:
        """K key-derived labels in [0, num_classes)."""
        raw = np.frombuffer(self.derive("trigger/labels", 4 * self.trigger_count), dtype="<u4")
        return torch.from_numpy((raw % self.num_classes).astype(np.int64))

    def probe_inputs(self) -> torch.Tensor:
        """P key-derived probe images in [0, 1], float64 (for the logit factor)."""
        return self._images("probe/inputs", self.probe_count)

    def signature(self) -> torch.Tensor:
        """n key-derived signature bits (0./1., float64)."""
        raw = np.frombuffer(self.derive("feature/bits", self.signature_bits), dtype=np.uint8)
        return torch.from_numpy((raw & 1).astype(np.float64))

    def projection(self, width: int) -> torch.Tensor:
        """The n × width key-derived projection, entries uniform in [-1, 1), float64."""
        raw = np.frombuffer(
            self.derive(f"feature/projection/{width}", 4 * self.signature_bits * width), dtype="<u4"
        )
        values = raw.astype(np.float64) / 2**31 - 1.0
        return torch.from_numpy(values).reshape(self.signature_bits, width)


def get_feature_vector(weight: torch.Tensor) -> torch.Tensor:
    """Uchida et al.: the layer's filters averaged over output channels, flattened."""
    return weight.mean(dim=0).flatten()
