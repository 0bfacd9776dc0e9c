"""Artefact files: a safetensors file from tensors, and the malformed artefacts every loader
must refuse with a specific reason."""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import save as save_safetensors


def safetensors_bytes(tensors: dict[str, torch.Tensor], **meta: str) -> bytes:
    return save_safetensors(tensors, metadata=meta or None)


def bad_artefacts(good: bytes) -> dict[str, tuple[bytes, str, str]]:
    tiny = load_artefact_bytes(good)
    state = {k: v.contiguous() for k, v in tiny.items()}
    config = json.dumps({"stem_width": 8, "widths": [16, 32, 32]})
    full = json.dumps({})  # default config: far wider than these tensors
    return {
        "truncated": (good[: len(good) // 2], "safetensors", "corrupt_artefact"),
        "random": (os.urandom(4096), "safetensors", "corrupt_artefact"),
        "no_arch": (safetensors_bytes(state), "safetensors", "unknown_architecture"),
        "unknown_arch": (
            safetensors_bytes(state, **{"authchain.arch": "vit_h14", "authchain.config": config}),
            "safetensors",
            "unknown_architecture",
        ),
        "wrong_shapes": (
            safetensors_bytes(
                state, **{"authchain.arch": "small_resnet", "authchain.config": full}
            ),
            "safetensors",
            "shape_mismatch",
        ),
        "bad_config": (
            safetensors_bytes(state, **{"authchain.arch": "small_resnet", "authchain.config": "{"}),
            "safetensors",
            "bad_config",
        ),
        "missing_tensor": (
            safetensors_bytes(
                {k: v for k, v in state.items() if k != "fc.bias"},
                **{"authchain.arch": "small_resnet", "authchain.config": config},
            ),
            "safetensors",
            "shape_mismatch",
        ),
        "truncated_pt": (b"PK\x03\x04" + b"\x00" * 50, "pt", "corrupt_artefact"),
    }


def load_artefact_bytes(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)
