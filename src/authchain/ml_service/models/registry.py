"""Architectures by name (torchvision/timm style): name -> builder, typed config, input shape.

An artefact names its architecture and config in its metadata; `build_model` rebuilds the
network from them before any weights are loaded, so a file never carries code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from authchain.ml_service.errors import ArchitectureError

T = TypeVar("T", bound=type[nn.Module])


@dataclass(frozen=True)
class Architecture:
    """A registered architecture."""

    name: str
    builder: Callable[[Any], nn.Module]
    config_cls: type[Any]
    input_shape: tuple[int, ...]

    def parse_config(self, data: dict[str, Any]) -> Any:
        """The typed config from its JSON form; ArchitectureError naming a bad key."""
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ArchitectureError("bad_config", f"{self.name}: unknown config key {unknown[0]}")
        values = {}
        for name, value in data.items():
            default = getattr(self.config_cls(), name)
            if isinstance(default, tuple):
                ok = isinstance(value, list | tuple) and all(_positive_int(v) for v in value)
                value = tuple(value) if ok else value
            else:
                ok = _positive_int(value)
            if not ok or (isinstance(default, tuple) and len(value) != len(default)):
                raise ArchitectureError("bad_config", f"{self.name}: bad config value {name}")
            values[name] = value
        return self.config_cls(**values)

    def config_to_json(self, config: Any) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
        }

    def specialize(self, config: Any) -> Architecture:
        """This architecture for one parsed config (timm's input shape comes from it)."""
        return self


def _positive_int(value: Any) -> bool:
    return type(value) is int and 0 < value <= 4096


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str, config_cls: type[Any], *, input_shape: tuple[int, ...]
) -> Callable[[T], T]:
    """Class decorator: make `name` buildable from artefact metadata."""

    def wrap(cls: T) -> T:
        ARCHITECTURES[name] = Architecture(name, cls, config_cls, input_shape)
        return cls

    return wrap


def get_architecture(name: str) -> Architecture:
    """The registered architecture, or ArchitectureError(unknown_architecture)."""
    arch = ARCHITECTURES.get(name)
    if arch is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ArchitectureError(
            "unknown_architecture", f"architecture {name!r:.64} is not registered (known: {known})"
        )
    return arch


def build_model(name: str, config: dict[str, Any]) -> tuple[nn.Module, Architecture]:
    """A freshly initialised network of a registered architecture, and the architecture as
    that config specializes it."""
    arch = get_architecture(name)
    parsed = arch.parse_config(config)
    return arch.builder(parsed), arch.specialize(parsed)
