"""Session fixtures shared by unit, integration and e2e tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.ml_models import TrainedModel


@pytest.fixture(scope="session")
def watermarked(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    from tests.ml_models import train_watermarked

    return train_watermarked(tmp_path_factory.mktemp("watermarked"))


@pytest.fixture(scope="session")
def clean(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    from tests.ml_models import train_clean

    return train_clean(tmp_path_factory.mktemp("clean"))
