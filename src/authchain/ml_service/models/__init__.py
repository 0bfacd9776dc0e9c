"""Model architectures the ML service can rebuild from an artefact's metadata."""

from authchain.ml_service.errors import ArchitectureError
from authchain.ml_service.models.registry import (
    ARCHITECTURES,
    Architecture,
    build_model,
    get_architecture,
)
from authchain.ml_service.models.resnet import SmallResNet, SmallResNetConfig

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ArchitectureError",
    "SmallResNet",
    "SmallResNetConfig",
    "build_model",
    "get_architecture",
]
