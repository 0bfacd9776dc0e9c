"""Fixtures shared by unit, integration and e2e tests, and markers by directory: every test
under tests/unit is marked `unit`, under tests/integration `integration`, under tests/e2e
`e2e` (`pytest -m "not e2e"` runs the first two)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import (
    ModelCache,
    TrainedModel,
    train_clean,
    train_overwrite,
    train_own_finetune,
    train_spared,
    train_stripped,
    train_watermarked,
)

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = item.path.relative_to(TESTS).parts[0]
        if kind in KINDS:
            item.add_marker(kind)


@pytest.fixture(scope="session")
def model_cache(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ModelCache:
    """Trained models kept across runs under the pytest cache (in a temp dir without it)."""
    cache = getattr(request.config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return ModelCache(tmp_path_factory.mktemp("models"))
    return ModelCache(cache.mkdir("authchain-models"))


@pytest.fixture(scope="session")
def watermarked(model_cache: ModelCache) -> TrainedModel:
    return train_watermarked(model_cache)


@pytest.fixture(scope="session")
def clean(model_cache: ModelCache) -> TrainedModel:
    return train_clean(model_cache)


@pytest.fixture(scope="session")
def overwrite(model_cache: ModelCache, watermarked: TrainedModel) -> TrainedModel:
    return train_overwrite(model_cache, watermarked)


@pytest.fixture(scope="session")
def own_finetune(model_cache: ModelCache, watermarked: TrainedModel) -> TrainedModel:
    return train_own_finetune(model_cache, watermarked)


@pytest.fixture(scope="session")
def spared(model_cache: ModelCache) -> TrainedModel:
    return train_spared(model_cache)


@pytest.fixture(scope="session")
def stripped(model_cache: ModelCache, spared: TrainedModel) -> TrainedModel:
    return train_stripped(model_cache, spared)
