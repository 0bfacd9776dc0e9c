"""Model architectures the ML service can rebuild from an artefact's metadata."""

from authchain.ml_service.errors import ArchitectureError
from authchain.ml_service.models.registry import (
    ARCHITECTURES,
    Architecture,
    build_model,
    get_architecture,
)
from authchain.ml_service.models.resnet import SmallResNet, SmallResNetConfig
from authchain.ml_service.models.timm_arch import (
    DEFAULT_TIMM_MODELS,
    TIMM,
    TimmConfig,
    set_allowed_timm_models,
    timm_models_allowed,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_TIMM_MODELS",
    "TIMM",
    "Architecture",
    "ArchitectureError",
    "SmallResNet",
    "SmallResNetConfig",
    "TimmConfig",
    "build_model",
    "get_architecture",
    "set_allowed_timm_models",
    "timm_models_allowed",
]
