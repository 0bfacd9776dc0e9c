"""Any image classifier timm registers, by name, from an artefact's metadata.

    authchain.arch     "timm"
    authchain.config   {"model": "resnet18", "num_classes": 10, "in_chans": 3,
                        "input_size": [64, 64]}

The network is built with `timm.create_model(model, pretrained=False, num_classes=...,
in_chans=...)`, plus `img_size` for models whose input size is fixed (ViTs): never with
pretrained weights, a checkpoint path or any other option, so nothing is ever downloaded or
read. The config has exactly these keys; nothing else from the file reaches timm.

Only models on the allow-list are built (`architecture_not_allowed` otherwise): the ML
service's `timm_models` setting, `DEFAULT_TIMM_MODELS` by default: a dozen common image
classifiers in small variants. Every validator of a network must run the same list, as it runs
the same code: a model one validator builds and another refuses would split their verdicts.
As for the built-ins, the declared config is built on torch's meta device and checked against
the file's tensors before any weight is read (`artefact.load_artefact`).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn

from authchain.ml_service.errors import ArchitectureError
from authchain.ml_service.models.registry import ARCHITECTURES, Architecture

TIMM = "timm"
DEFAULT_TIMM_MODELS = (
    "resnet10t",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "convnext_atto",
    "regnety_002",
    "ghostnet_100",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
)
"""The default allow-list: small variants of common image classifier families."""
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.]{0,63}$")

_allowed: frozenset[str] = frozenset(DEFAULT_TIMM_MODELS)
_allowed_lock = threading.Lock()


def allowed_timm_models() -> frozenset[str]:
    """The timm models this process builds."""
    return _allowed


def set_allowed_timm_models(names: Iterable[str]) -> None:
    """Set the allow-list (the ML service does this from its settings at start-up)."""
    global _allowed
    names = frozenset(names)
    for name in names:
        if not MODEL_NAME.match(name):
            raise ValueError(f"not a timm model name: {name!r:.80}")
    with _allowed_lock:
        _allowed = names


@contextmanager
def timm_models_allowed(names: Iterable[str]) -> Iterator[None]:
    """The allow-list set to `names` for the duration (tests, `model train`)."""
    before = allowed_timm_models()
    set_allowed_timm_models(names)
    try:
        yield
    finally:
        set_allowed_timm_models(before)


@dataclass(frozen=True)
class TimmConfig:
    """What an artefact may say about a timm model: its name and its shapes."""

    model: str
    num_classes: int
    in_chans: int = 3
    input_size: tuple[int, int] = (224, 224)


def _int_in(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


@dataclass(frozen=True)
class TimmArchitecture(Architecture):
    """`timm`: one registry entry for every timm model, its input shape from the config."""

    def parse_config(self, data: dict[str, Any]) -> TimmConfig:
        fields = {f.name for f in dataclasses.fields(TimmConfig)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ArchitectureError(
                "bad_config", f"timm: unknown config key {unknown[0]!r:.64} (allowed: "
                f"{', '.join(sorted(fields))})",
            )  # fmt: skip
        name = data.get("model")
        if not isinstance(name, str) or not MODEL_NAME.match(name):
            raise ArchitectureError("bad_config", "timm: config.model must be a timm model name")
        if name not in allowed_timm_models():
            raise ArchitectureError(
                "architecture_not_allowed",
                f"timm model {name!r} is not on this network's allow-list (ML service setting "
                f"timm_models: {', '.join(sorted(allowed_timm_models())) or 'empty'})",
            )
        if not _int_in(data.get("num_classes"), 2, 4096):
            raise ArchitectureError("bad_config", "timm: config.num_classes must be 2..4096")
        in_chans = data.get("in_chans", 3)
        if not _int_in(in_chans, 1, 64):
            raise ArchitectureError("bad_config", "timm: config.in_chans must be 1..64")
        size = data.get("input_size", [224, 224])
        pair = isinstance(size, list | tuple) and len(size) == 2
        if not (pair and all(_int_in(v, 8, 1024) for v in size)):
            raise ArchitectureError("bad_config", "timm: config.input_size must be [H, W], 8..1024")
        return TimmConfig(name, data["num_classes"], in_chans, (size[0], size[1]))

    def config_to_json(self, config: Any) -> dict[str, Any]:
        return {
            "model": config.model,
            "num_classes": config.num_classes,
            "in_chans": config.in_chans,
            "input_size": list(config.input_size),
        }

    def specialize(self, config: Any) -> Architecture:
        return dataclasses.replace(self, input_shape=(config.in_chans, *config.input_size))


def build_timm(config: TimmConfig) -> nn.Module:
    """The timm model, randomly initialised: `pretrained=False`, never a download."""
    import timm  # heavy (it brings torchvision): imported when a timm artefact is built

    if not timm.is_model(config.model):
        raise ArchitectureError(
            "unknown_architecture", f"timm has no model {config.model!r} (timm {timm.__version__})"
        )
    kwargs: dict[str, Any] = {"num_classes": config.num_classes, "in_chans": config.in_chans}
    pretrained_cfg = timm.get_pretrained_cfg(config.model, allow_unregistered=True)
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = config.input_size
    model: nn.Module = timm.create_model(config.model, pretrained=False, **kwargs)
    return model


ARCHITECTURES[TIMM] = TimmArchitecture(TIMM, build_timm, TimmConfig, (3, 224, 224))
