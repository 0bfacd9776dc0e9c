"""Whole training runs through the entry points owners use: `authchain model train` (a timm
model), fine-tuning an existing model, the README's hook example as written, and the Lightning
callback. Each trains for seconds to tens of seconds, so they live here rather than in unit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from typer.testing import CliRunner

from authchain.cli import app
from authchain.ml_service.models import TimmConfig, timm_models_allowed
from authchain.ml_service.models.timm_arch import build_timm
from authchain.ml_service.owner import train_model, verify_local
from authchain.ml_service.watermark.verify import Thresholds
from authchain.watermark import EmbedSpec
from tests.support.models import TrainedModel

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"


def test_fine_tuning_embeds_a_watermark_into_an_existing_model(
    clean: TrainedModel, tmp_path: Path
) -> None:
    result = train_model(
        b"\x0f" * 32, tmp_path, tiny=True, epochs=None, seed=0, watermark=True,
        base=clean.artefact, spec=EmbedSpec(),
    )  # fmt: skip
    assert result.aid != clean.aid
    report = verify_local(
        result.artefact, result.evidence, "0f" * 32,
        Thresholds(0.9, 0.2, -0.05, 0.05),
    )  # fmt: skip
    assert report.ok, report


def test_model_train_arch_watermarks_a_timm_model(tmp_path: Path) -> None:
    out = tmp_path / "eff"
    args = ["model", "train", "--arch", "test_resnet", "--epochs", "4", "--owner", "ab" * 32,
            "--spares", "1", "-o", str(out), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout[result.stdout.index("{") :])
    assert body["passes"], body["stats"]
    assert (out / "model.safetensors").exists() and (out / "evidence.json").exists()
    [spare] = body["spares"]  # written beside, never uploaded
    assert spare["passes"] and Path(spare["evidence"]) == out / "spares" / "spare-0.json"
    verify = runner.invoke(
        app, ["model", "verify", str(out / "model.safetensors"), str(out / "evidence.json")]
    )
    assert verify.exit_code == 1 and "architecture_not_allowed" in verify.output  # off the list


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's hook example, as written, trains, watermarks and writes both files."""
    text = README.read_text()
    match = re.search(r"<!-- hook-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README has no hook example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), "README hook example", "exec"), namespace)
    result = namespace["result"]
    assert result.passes, result.stats
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert (tmp_path / "out" / "evidence.json").exists()


def test_the_lightning_callback_watermarks_an_unchanged_training_step(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from authchain.ml_service.data import load_digits_split
    from authchain.watermark_lightning import WatermarkCallback

    class Digits(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            with timm_models_allowed(["test_resnet"]):
                self.model = build_timm(TimmConfig("test_resnet", 10, 3, (32, 32)))

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=2e-3)

    torch.manual_seed(0)
    train, _ = load_digits_split(size=32)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=64, shuffle=True)
    config = {"model": "test_resnet", "num_classes": 10, "input_size": [32, 32]}
    callback = WatermarkCallback(
        key=b"\x01" * 32, arch="timm", config=config, out_dir=tmp_path, quiet=True,
        spec=EmbedSpec(signature_weight=2.0), key_seed=b"\x07" * 32, spares=1,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    trainer.fit(Digits(), loader)
    assert callback.result is not None and callback.result.passes, callback.result
    [spare] = callback.result.spares  # embedded with the primary, written apart
    assert spare.passes and spare.evidence.parent == tmp_path / "spares"
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "evidence.json").exists()
