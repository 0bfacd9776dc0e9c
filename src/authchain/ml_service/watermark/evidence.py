"""Evidence files of both watermark schemes, and the key material derived from them.

The evidence file is what an owner discloses to validators so they can check the watermark.
`multi_factor_v2` (what every tool writes):

    {"scheme_id": "multi_factor_v2", "version": 2,
     "owner": <account id hex>, "key_seed": <32 bytes hex>,
     "arch": "small_resnet", "num_classes": 10, "input_shape": [3, 32, 32],
     "trigger_count": 100, "signature_bits": 2048,
     "signature_layers": [{"name": "stem.0.weight", "bits": 293}, ...],
     "probe_count": 32, "reference_logits": [[...10 floats...], ... 32 rows]}

`multi_factor_v1` (still verified, so that its registrations stay valid) has `"version": 1`
and one `"feature_layer"` in place of `signature_layers`; its signature reads one layer's
filters in stored order (Uchida et al.), which a channel permutation scrambles.

Everything secret-looking is *derived*, never stored: trigger inputs and labels, the signature
directions and bits and the probe inputs all come from BLAKE3 in keyed XOF mode under
`master = BLAKE3("authchain/<scheme_id>/master" || owner || key_seed)`. Binding the owner into
the master key is what stops evidence being re-targeted: change `owner` and every trigger,
label and bit changes, so the model no longer matches. The scheme id in the domain keeps the
two schemes' streams apart. Only `reference_logits` are measured (from the model, at embedding
time); they commit to the exact function the owner registered.

Derivation uses BLAKE3 bytes rather than a library RNG, so every validator gets identical
values whatever its numpy or torch version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal

import blake3
import numpy as np
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from torch.nn import functional as F

from authchain.ml_service.errors import EvidenceError
from authchain.ml_service.watermark.signature import (
    MAX_SIGNATURE_LAYERS,
    SHAPE_DIM,
    SignatureKey,
)

SCHEME_V1 = "multi_factor_v1"
SCHEME_V2 = "multi_factor_v2"
SCHEME_ID = SCHEME_V2
"""The scheme every tool writes."""
_HEX64 = r"^[0-9a-f]{64}$"
TRIGGER_GRID = 8
"""Triggers and probes are 8×8 noise upsampled to the input size: shapes a network can learn."""


def _check_shape(value: tuple[int, int, int]) -> tuple[int, int, int]:
    if not all(0 < v <= 1024 for v in value):
        raise ValueError("input_shape entries must be in 1..1024")
    return value


def _check_logits(rows: list[list[float]], probe_count: int, num_classes: int) -> None:
    if len(rows) != probe_count or any(len(r) != num_classes for r in rows):
        raise ValueError("reference_logits must be probe_count rows of num_classes values")
    if not all(math.isfinite(v) for r in rows for v in r):
        raise ValueError("reference_logits must be finite")


class EvidenceV1(BaseModel):
    """A parsed `multi_factor_v1` evidence file (field order is the file's)."""

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

    _shape = field_validator("input_shape")(_check_shape)

    @model_validator(mode="after")
    def _logits(self) -> EvidenceV1:
        _check_logits(self.reference_logits, self.probe_count, self.num_classes)
        return self

    def to_bytes(self) -> bytes:
        """The evidence file's bytes (its BLAKE3 is the `evidence_hash`)."""
        return self.model_dump_json(indent=1).encode() + b"\n"


class SignatureLayer(BaseModel):
    """One layer of a v2 signature and how many of its bits it carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    bits: int = Field(ge=1, le=4096)


class EvidenceV2(BaseModel):
    """A parsed `multi_factor_v2` evidence file (field order is the file's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme_id: Literal["multi_factor_v2"]
    version: Literal[2] = 2
    owner: str = Field(pattern=_HEX64)
    key_seed: str = Field(pattern=_HEX64)
    arch: str = Field(min_length=1, max_length=64)
    num_classes: int = Field(ge=2, le=4096)
    input_shape: tuple[int, int, int]
    trigger_count: int = Field(ge=1, le=4096)
    signature_bits: int = Field(ge=1, le=4096)
    signature_layers: tuple[SignatureLayer, ...] = Field(
        min_length=1, max_length=MAX_SIGNATURE_LAYERS
    )
    probe_count: int = Field(ge=1, le=1024)
    reference_logits: list[list[float]]

    _shape = field_validator("input_shape")(_check_shape)

    @model_validator(mode="after")
    def _consistent(self) -> EvidenceV2:
        names = [layer.name for layer in self.signature_layers]
        if len(set(names)) != len(names):
            raise ValueError("signature_layers names a layer twice")
        if sum(layer.bits for layer in self.signature_layers) != self.signature_bits:
            raise ValueError("signature_layers' bits must add up to signature_bits")
        _check_logits(self.reference_logits, self.probe_count, self.num_classes)
        return self

    def to_bytes(self) -> bytes:
        """The evidence file's bytes (its BLAKE3 is the `evidence_hash`)."""
        return self.model_dump_json(indent=1).encode() + b"\n"


Evidence = EvidenceV1 | EvidenceV2
"""Evidence of either scheme."""

_EVIDENCE: TypeAdapter[Evidence] = TypeAdapter(
    Annotated[EvidenceV1 | EvidenceV2, Field(discriminator="scheme_id")]
)


def parse_evidence(data: bytes) -> Evidence:
    """Evidence of either scheme from file bytes; EvidenceError naming the bad field."""
    try:
        return _EVIDENCE.validate_json(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = [str(p) for p in e["loc"]]
        if loc and loc[0].startswith("multi_factor_"):  # the discriminator's branch
            loc = loc[1:]
        field = ".".join(loc) or "evidence"
        raise EvidenceError("corrupt_evidence", f"evidence {field}: {e['msg']}") from None


@dataclass(frozen=True)
class KeyMaterial:
    """Everything derived from (scheme, owner, key_seed) for one evidence shape."""

    owner: bytes
    key_seed: bytes
    input_shape: tuple[int, int, int]
    num_classes: int
    trigger_count: int
    signature_bits: int
    probe_count: int
    scheme_id: str = SCHEME_V2
    signature_layers: tuple[tuple[str, int], ...] = ()
    """v2: (layer name, bits) in order; their bits add up to `signature_bits`."""

    @classmethod
    def from_evidence(cls, ev: Evidence) -> KeyMaterial:
        layers = (
            tuple((layer.name, layer.bits) for layer in ev.signature_layers)
            if isinstance(ev, EvidenceV2)
            else ()
        )
        return cls(
            bytes.fromhex(ev.owner),
            bytes.fromhex(ev.key_seed),
            ev.input_shape,
            ev.num_classes,
            ev.trigger_count,
            ev.signature_bits,
            ev.probe_count,
            ev.scheme_id,
            layers,
        )

    @cached_property
    def master(self) -> bytes:
        domain = f"authchain/{self.scheme_id}/master".encode()
        return blake3.blake3(domain + self.owner + self.key_seed).digest()

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

    def _uniform(self, label: str, rows: int, cols: int) -> torch.Tensor:
        """rows × cols key-derived values uniform in [-1, 1), float64."""
        raw = np.frombuffer(self.derive(label, 4 * rows * cols), dtype="<u4")
        return torch.from_numpy(raw.astype(np.float64) / 2**31 - 1.0).reshape(rows, cols)

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
        label = "feature/bits" if self.scheme_id == SCHEME_V1 else "signature/bits"
        raw = np.frombuffer(self.derive(label, self.signature_bits), dtype=np.uint8)
        return torch.from_numpy((raw & 1).astype(np.float64))

    def projection(self, width: int) -> torch.Tensor:
        """v1: the n × width key-derived projection, entries uniform in [-1, 1), float64."""
        return self._uniform(f"feature/projection/{width}", self.signature_bits, width)

    def signature_keys(self) -> list[SignatureKey]:
        """v2: each layer's directions and bits (see `signature.py`)."""
        bits = self.signature()
        keys, start = [], 0
        for index, (name, count) in enumerate(self.signature_layers):
            a, c, e = (
                self._uniform(f"signature/{index}/{part}", count, SHAPE_DIM) for part in "ace"
            )
            keys.append(SignatureKey(name, a, c, e, bits[start : start + count]))
            start += count
        return keys


def get_feature_vector(weight: torch.Tensor) -> torch.Tensor:
    """v1 (Uchida et al.): the layer's filters averaged over output channels, flattened."""
    return weight.mean(dim=0).flatten()
