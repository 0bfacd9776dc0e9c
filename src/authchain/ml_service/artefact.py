"""Model artefacts: safetensors with architecture metadata, or weights-only `.pt` state dicts.

A safetensors artefact's metadata names what to build:

    authchain.arch          "small_resnet"
    authchain.config        JSON of the architecture's config, e.g. {"num_classes": 10, ...}
    authchain.input_shape   JSON list, e.g. [3, 32, 32]

`authchain.arch = "timm"` names any timm image classifier on the allow-list
(`models/timm_arch.py`); its config holds the model name, classes, channels and input size.

A `.pt` artefact is read only with `torch.load(weights_only=True)`, which refuses any pickle
that would build an object other than tensors and plain containers, so a malicious file is
never executed. It holds either `{"arch", "config", "state_dict"}` or a bare state dict of a
default-config `small_resnet`. Nothing here ever unpickles.

Every failure is an `ArtefactError` with a stable reason: `corrupt_artefact`,
`unsafe_artefact`, `unknown_architecture`, `bad_config`, `shape_mismatch`.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

from authchain.ml_service.errors import ArchitectureError, ArtefactError
from authchain.ml_service.models import (
    Architecture,
    build_model,
    get_architecture,
)

META_ARCH = "authchain.arch"
META_CONFIG = "authchain.config"
META_INPUT_SHAPE = "authchain.input_shape"
DEFAULT_ARCH = "small_resnet"
FORMATS = ("safetensors", "pt")


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from an artefact, in eval mode."""

    model: nn.Module
    arch: Architecture
    config: Any


def encode_artefact(model: nn.Module, arch: Architecture, config: Any) -> bytes:
    """The safetensors bytes of `model`, with its architecture in the metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        META_ARCH: arch.name,
        META_CONFIG: json.dumps(arch.config_to_json(config), sort_keys=True),
        META_INPUT_SHAPE: json.dumps(list(arch.input_shape)),
    }
    return canonical_safetensors(save_safetensors(tensors, metadata=metadata))


def canonical_safetensors(data: bytes) -> bytes:
    """`data` with its header's JSON in sorted key order, so the same model always has the
    same bytes, and so the same aid. safetensors writes the header from a hash map, whose
    order changes from one process (and one call) to the next."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def encode_pt_artefact(model: nn.Module, arch: Architecture, config: Any) -> bytes:
    """The `.pt` form of `model`: `torch.save({"arch", "config", "state_dict"})`."""
    buffer = io.BytesIO()
    state = {
        "arch": arch.name,
        "config": arch.config_to_json(config),
        "state_dict": model.state_dict(),
    }
    torch.save(state, buffer)
    return buffer.getvalue()


def sniff_format(head: bytes) -> str:
    """`safetensors` if the file opens with a u64 header length then `{`; `pt` for a zip
    (torch.save) or a raw pickle; anything else is called safetensors and fails to load."""
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "pt"
    return "safetensors"


def load_artefact(path: Path) -> LoadedModel:
    """Rebuild the model stored at `path` (`.safetensors` or `.pt`).

    The declared architecture is first built on torch's `meta` device (shapes only, no
    memory) and its tensor names and shapes are checked against the file's. Only then are the
    tensors read and the real model allocated, so a tiny file that declares a huge config is
    refused (`shape_mismatch`) before it can cost anything: a model that is built is never
    bigger than the file that describes it.
    """
    if path.suffix == ".pt":
        arch_name, config, tensors = _read_pt(path)
        check_declared_shapes(arch_name, config, {k: tuple(v.shape) for k, v in tensors.items()})
    else:
        arch_name, config, shapes = _read_safetensors_header(path)
        check_declared_shapes(arch_name, config, shapes)
        tensors = _read_safetensors_tensors(path)
    try:
        model, arch = build_model(arch_name, config)
    except ArchitectureError as exc:
        raise ArtefactError(exc.reason, exc.detail) from exc
    _load_weights(model, tensors)
    model.eval()
    return LoadedModel(model, arch, arch.parse_config(config))


def check_declared_shapes(
    arch_name: str, config: dict[str, Any], shapes: dict[str, tuple[int, ...]]
) -> None:
    """ArtefactError unless the architecture `config` declares has exactly the file's tensor
    names and shapes; the check allocates nothing (torch's meta device)."""
    try:
        with torch.device("meta"):
            model, _ = build_model(arch_name, config)
    except ArchitectureError as exc:
        raise ArtefactError(exc.reason, exc.detail) from exc
    _check_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()}, shapes)


def _check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ArtefactError(
            "shape_mismatch",
            f"tensors do not match the architecture: {what} "
            f"({len(missing)} missing, {len(unexpected)} unexpected)",
        )
    for name, shape in found.items():
        if shape != expected[name]:
            raise ArtefactError(
                "shape_mismatch",
                f"tensor {name} has shape {list(shape)}, the architecture needs "
                f"{list(expected[name])}",
            )


def _read_safetensors_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtefactError("corrupt_artefact", f"not a readable safetensors file: {exc}") from exc


def _read_safetensors_header(
    path: Path,
) -> tuple[str, dict[str, Any], dict[str, tuple[int, ...]]]:
    """Architecture, config and tensor shapes from the header alone (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtefactError("corrupt_artefact", f"not a readable safetensors file: {exc}") from exc
    if META_ARCH not in meta:
        raise ArtefactError(
            "unknown_architecture", f"safetensors metadata has no {META_ARCH!r} entry"
        )
    try:
        config = json.loads(meta.get(META_CONFIG, "{}"))
        input_shape = json.loads(meta.get(META_INPUT_SHAPE, "null"))
    except json.JSONDecodeError as exc:
        raise ArtefactError("bad_config", f"artefact metadata is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ArtefactError("bad_config", f"{META_CONFIG} must be a JSON object")
    arch = meta[META_ARCH]
    _check_input_shape(arch, config, input_shape)
    return arch, config, shapes


def _check_input_shape(arch_name: str, config: dict[str, Any], input_shape: Any) -> None:
    try:
        arch = get_architecture(arch_name)
        expected = list(arch.specialize(arch.parse_config(config)).input_shape)
    except ArchitectureError as exc:
        raise ArtefactError(exc.reason, exc.detail) from exc
    if input_shape is not None and input_shape != expected:
        raise ArtefactError(
            "shape_mismatch", f"input shape {input_shape} does not fit {arch_name} ({expected})"
        )


def _read_pt(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused to build an object: the file tried to run code or load a class
        first = str(exc).splitlines()[0] if str(exc) else "refused"
        raise ArtefactError(
            "unsafe_artefact", f"refused by the weights-only loader: {first:.200}"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as exc:
        raise ArtefactError("corrupt_artefact", f"not a readable .pt file: {exc!s:.200}") from exc
    if not isinstance(obj, dict):
        raise ArtefactError("corrupt_artefact", f".pt must hold a dict, got {type(obj).__name__}")
    if "state_dict" in obj:
        arch = obj.get("arch", DEFAULT_ARCH)
        config = obj.get("config", {})
        tensors = obj["state_dict"]
        if not isinstance(arch, str) or not isinstance(config, dict):
            raise ArtefactError("bad_config", ".pt 'arch' must be a string, 'config' a dict")
    else:
        arch, config, tensors = DEFAULT_ARCH, {}, obj
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise ArtefactError("corrupt_artefact", ".pt state dict must map names to tensors")
    return arch, config, tensors


def _load_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    _check_shapes({k: tuple(v.shape) for k, v in expected.items()},
                  {k: tuple(v.shape) for k, v in tensors.items()})  # fmt: skip
    for name, tensor in tensors.items():
        if tensor.dtype != expected[name].dtype and not (
            tensor.is_floating_point() and expected[name].is_floating_point()
        ):
            raise ArtefactError(
                "shape_mismatch",
                f"tensor {name} has dtype {tensor.dtype}, not {expected[name].dtype}",
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtefactError("corrupt_artefact", f"tensor {name} holds NaN or infinity")
    model.load_state_dict(tensors, strict=True)
