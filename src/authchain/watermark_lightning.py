"""The watermark hook as a PyTorch Lightning callback (`pip install authchain[lightning]`).

    from authchain.watermark_lightning import WatermarkCallback

    callback = WatermarkCallback(key="me.key", arch="timm",
                                 config={"model": "resnet18", "num_classes": 10,
                                         "input_size": [64, 64]}, out_dir="out/")
    pl.Trainer(callbacks=[callback], ...).fit(module)     # module.model is the network

Your `training_step` stays as it is. Key-derived triggers join each `[inputs, labels]` batch
before it reaches your step, and before each optimiser step the callback adds the signature
regulariser's gradients (`authchain.watermark.Watermark`); batches it cannot extend (tuples,
dicts) get a separate step on a batch of triggers instead. When training ends it writes the
artefact and the evidence to `out_dir` and prints the aid, the evidence hash and the p-values;
the result is `callback.result`. It embeds into `module.<model_attr>` (default `model`; the
module itself if it has no such attribute), which must be the architecture `arch`/`config`
name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from authchain.floors import DEFAULT_FLOORS, Floors
from authchain.ml_service.outputs import ModelReport
from authchain.ml_service.watermark.embed import DEFAULT_SPARES
from authchain.watermark import EmbedSpec, HasAccount, Watermark

__all__ = ["WatermarkCallback"]


class WatermarkCallback(pl.Callback):
    """Embeds `multi_factor_v2` during `Trainer.fit`; writes the files at the end."""

    def __init__(
        self,
        *,
        key: str | Path | HasAccount | bytes,
        arch: str,
        config: dict[str, Any],
        out_dir: str | Path,
        spec: EmbedSpec | None = None,
        floors: Floors = DEFAULT_FLOORS,
        triggers_per_step: int = 21,
        model_attr: str = "model",
        quiet: bool = False,
        key_seed: bytes | None = None,
        spares: int = DEFAULT_SPARES,
    ) -> None:
        self.key, self.arch, self.config, self.spec, self.floors = key, arch, config, spec, floors
        self.key_seed = key_seed
        self.spares = spares
        """Spare watermarks embedded beside the primary (their evidence: OUT/spares/)."""
        """Fixed watermark key seed (default: a fresh random one, as `Watermark` does)."""
        self.out_dir = Path(out_dir)
        self.triggers_per_step = triggers_per_step
        self.model_attr = model_attr
        self.quiet = quiet
        self.watermark: Watermark | None = None
        self.result: ModelReport | None = None
        self._mixed = False

    def _network(self, pl_module: pl.LightningModule) -> nn.Module:
        network = getattr(pl_module, self.model_attr, pl_module)
        if not isinstance(network, nn.Module):
            raise TypeError(f"{self.model_attr} of the LightningModule is not an nn.Module")
        return network

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.watermark is None:
            self.watermark = Watermark(
                self._network(pl_module), key=self.key, arch=self.arch, config=self.config,
                spec=self.spec, floors=self.floors, key_seed=self.key_seed, spares=self.spares,
            )  # fmt: skip

    def _trigger_count(self, wm: Watermark) -> int:
        """`triggers_per_step` for each key, the primary and every spare."""
        return self.triggers_per_step * (1 + len(wm.spares))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Mix triggers into the batch itself when it is a mutable `[inputs, labels]` list
        (a `TensorDataset` loader's batches are), so they share its normalisation statistics."""
        wm = self.watermark
        self._mixed = False
        if wm is None or not isinstance(batch, list) or len(batch) != 2:
            return
        inputs, labels = batch
        if isinstance(inputs, torch.Tensor) and isinstance(labels, torch.Tensor):
            batch[0], batch[1] = wm.mix(inputs, labels, count=self._trigger_count(wm))
            self._mixed = True

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Add the signature regulariser's gradients (and, for batches that could not be
        mixed, a step on a batch of triggers) to this step's."""
        wm = self.watermark
        if wm is None:
            return
        extra = wm.regulariser()
        if not self._mixed:
            network = self._network(pl_module)
            device = next(network.parameters()).device
            empty = torch.empty(0, *wm.arch.input_shape, device=device)
            triggers, labels = wm.mix(empty, torch.empty(0, dtype=torch.int64, device=device),
                                      count=self._trigger_count(wm))  # fmt: skip
            extra = extra + F.cross_entropy(network(triggers), labels)
        extra.backward()  # type: ignore[no-untyped-call]  # adds to this step's gradients

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.watermark is not None and trainer.is_global_zero:
            self.result = self.watermark.finish(self.out_dir, quiet=self.quiet)
