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


@pytest.fixture(scope="session")
def overwrite(tmp_path_factory: pytest.TempPathFactory, watermarked: TrainedModel) -> TrainedModel:
    from tests.ml_models import train_overwrite

    return train_overwrite(tmp_path_factory.mktemp("overwrite"), watermarked)


@pytest.fixture(scope="session")
def own_finetune(
    tmp_path_factory: pytest.TempPathFactory, watermarked: TrainedModel
) -> TrainedModel:
    from tests.ml_models import train_own_finetune

    return train_own_finetune(tmp_path_factory.mktemp("own-finetune"), watermarked)
