"""Watermark your own image classifier in your own training loop (`multi_factor_v2`).

    import torch
    from torch.nn import functional as F
    from authchain.watermark import Watermark

    model = timm.create_model("resnet18", num_classes=10)            # or any nn.Module
    wm = Watermark(model, key="me.key", arch="timm",
                   config={"model": "resnet18", "num_classes": 10, "input_size": [64, 64]})
    for images, labels in loader:
        images, labels = wm.mix(images, labels)     # key-derived triggers join the batch
        loss = F.cross_entropy(model(images), labels) + wm.regulariser()
        opt.zero_grad(); loss.backward(); opt.step()
    result = wm.finish("out/")      # model.safetensors, evidence.json, spares/ (keep it secret)

`finish` writes the artefact (safetensors, its architecture in the metadata, so validators
rebuild it without your code) and the evidence, and prints the aid, the evidence hash and both
p-values against the chain's floors, with a recommended `wm_profile` if the model passes them.
Register with `authchain register --key me.key --model out/ --upload http://127.0.0.1:8080`
(`--model` is the directory `finish` wrote).

What the three factors need from your loop:
- input factor: `mix` appends a few of the K key-derived trigger images (noise in [0, 1], the
  model's input shape, fed as they are: do not normalise them) with their key-derived labels;
  the model must learn them;
- feature factor: `regulariser()` is the signature loss, times `EmbedSpec.signature_weight`
  (default 1): it pulls 2,048 readouts of the model's spatial conv weights (every k x k conv
  with k > 1, or `EmbedSpec.signature_layers`) to their key-derived bits. The readouts do not
  change when the channels are permuted or rescaled, so neither does the signature
  (`authchain.ml_service.watermark.signature`). The model needs at least one such conv;
- logit factor: nothing to do; `finish` records the final model's logits on the probes.

Spare watermarks: `spares` (default 3) more keys, derived from a secret only you hold, are
embedded with the primary (their triggers join `mix`, their signatures `regulariser`).
`finish` writes their evidence to `out/spares/`; the registration commits to their hashes, and
never uploads them. If a thief who read the primary evidence (every validator can) trains
the primary watermark out of a copy, a spare he never saw still proves the copy is yours
(`authchain dispute`). Keep `out/spares/` private and safe.

`arch` and `config` name the architecture as validators build it: `"timm"` with
`{"model", "num_classes", "in_chans", "input_size"}` for any timm model on the network's
allow-list, or a built-in (`"small_resnet"`). The model you train must be that architecture.
"""

from __future__ import annotations

import dataclasses
import secrets
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from authchain.floors import DEFAULT_FLOORS, Floors
from authchain.ml_service.errors import ArchitectureError
from authchain.ml_service.models import get_architecture, timm_models_allowed
from authchain.ml_service.models.timm_arch import allowed_timm_models
from authchain.ml_service.outputs import ModelReport, write_model_files
from authchain.ml_service.report import print_report
from authchain.ml_service.watermark.embed import (
    DEFAULT_SPARES,
    EmbedSpec,
    combined_regulariser,
    default_signature_weight,
    new_key_material,
    spare_keys,
)
from authchain.ml_service.watermark.evidence import SCHEME_V1, KeyMaterial

__all__ = ["EmbedSpec", "Watermark", "pick_feature_layer"]


def pick_feature_layer(model: nn.Module, signature_bits: int) -> str:
    """v1: the last weight (2-D or more) before the classifier whose filters, averaged over
    output channels, are at least `signature_bits` wide; else the widest one."""
    weights = [(n, p) for n, p in model.named_parameters() if p.dim() >= 2]
    if len(weights) < 2:
        raise ValueError("the model needs a weight besides its classifier for the signature")
    body = weights[:-1]  # the last weight is the classifier head
    for name, param in reversed(body):
        if param[0].numel() >= signature_bits:
            return name
    return max(body, key=lambda item: item[1][0].numel())[0]


class Watermark:
    """Embeds `key`'s watermark into `model` while you train it; `finish` writes the files."""

    def __init__(
        self,
        model: nn.Module,
        *,
        key: str | Path | HasAccount | bytes,
        arch: str,
        config: dict[str, Any],
        spec: EmbedSpec | None = None,
        floors: Floors = DEFAULT_FLOORS,
        seed: int = 0,
        key_seed: bytes | None = None,
        spares: int = DEFAULT_SPARES,
        spare_secret: bytes | None = None,
    ) -> None:
        self.model = model
        self.floors = floors
        self.owner = _owner(key)
        self.config_json = dict(config)
        with self._allowed():
            try:
                base = get_architecture(arch)
                self.config = base.parse_config(self.config_json)
            except ArchitectureError as exc:
                raise ValueError(f"{exc.reason}: {exc.detail}") from exc
            self.arch = base.specialize(self.config)
        spec = spec or EmbedSpec(signature_weight=default_signature_weight(arch))
        names = dict(model.named_parameters())
        if spec.scheme_id == SCHEME_V1 and (
            spec.feature_layer not in names or names[spec.feature_layer].dim() < 2
        ):
            spec = dataclasses.replace(
                spec, feature_layer=pick_feature_layer(model, spec.signature_bits)
            )
        self.spec = spec
        self.key: KeyMaterial = new_key_material(
            self.owner, self.arch, self.config.num_classes, spec, key_seed, model
        )
        self.spare_secret = spare_secret if spare_secret is not None else secrets.token_bytes(32)
        self.spares = spare_keys(self.key, self.spare_secret, spares)
        keys = [self.key, *self.spares]
        self._regulariser = combined_regulariser(model, keys, spec)
        self._triggers = torch.cat([k.trigger_inputs().to(torch.float32) for k in keys])
        self._labels = torch.cat([k.trigger_labels() for k in keys])
        self._generator = torch.Generator().manual_seed(seed)

    def mix(
        self, inputs: torch.Tensor, labels: torch.Tensor, count: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`inputs` and `labels` with `count` random triggers appended (default: a third of
        the batch, at least 8, for each key: the primary and every spare), on their device and
        in their dtype."""
        if tuple(inputs.shape[1:]) != tuple(self.arch.input_shape):
            raise ValueError(
                f"inputs of shape {list(inputs.shape[1:])}; the architecture takes "
                f"{list(self.arch.input_shape)}"
            )
        count = count if count is not None else max(8, len(inputs) // 3) * (1 + len(self.spares))
        pick = torch.randint(len(self._triggers), (count,), generator=self._generator)
        triggers = self._triggers[pick].to(device=inputs.device, dtype=inputs.dtype)
        return (
            torch.cat([inputs, triggers]),
            torch.cat([labels, self._labels[pick].to(device=labels.device, dtype=labels.dtype)]),
        )

    def regulariser(self) -> torch.Tensor:
        """The signature loss to add to yours (already weighted)."""
        return self._regulariser()

    def finish(
        self, out_dir: str | Path, *, test_accuracy: float | None = None, quiet: bool = False
    ) -> ModelReport:
        """Write `model.safetensors` and `evidence.json` to `out_dir`; print and return the aid,
        the evidence hash, the statistics against the floors and a recommended `wm_profile`
        (None, and `passes` false, if the model does not pass the floors: train longer, do not
        register it)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with self._allowed():
                result = write_model_files(
                    self.model.cpu(), self.arch, self.config, self.key, self.spec,
                    Path(out_dir), self.floors, test_acc=test_accuracy,
                    spares=self.spares, spare_secret=self.spare_secret,
                )  # fmt: skip
        finally:
            self.model.train(was_training)
        if not quiet:
            print_report(result, as_json=False)
        return result

    def _allowed(self) -> AbstractContextManager[None]:
        """Your own timm model is yours to train; the network's allow-list decides later."""
        name = self.config_json.get("model")
        if not isinstance(name, str):
            return nullcontext()
        return timm_models_allowed(allowed_timm_models() | {name})


class HasAccount(Protocol):
    """A key pair (`authchain.chain.crypto.KeyPair`): only its account id is read."""

    @property
    def account(self) -> bytes: ...


def _owner(key: str | Path | HasAccount | bytes) -> bytes:
    if isinstance(key, bytes):
        if len(key) != 32:
            raise ValueError("an owner account id is 32 bytes")
        return key
    if not isinstance(key, str | Path):
        return bytes(key.account)
    # a key file: read by the chain's code, and only now (importing this module loads none)
    from authchain.chain.crypto import read_key_file

    return bytes(read_key_file(Path(key)).account)
