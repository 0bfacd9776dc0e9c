"""Tiny models for ML tests, each trained once and then kept on disk for later runs.

- `watermarked`: trained with OWNER's watermark; its own evidence.
- `clean`: trained independently without a watermark; honest evidence made afterwards with
  CLEAN_OWNER's key (what an owner without a watermark could produce).
- `overwrite`: THIEF's fine-tune of `watermarked` with his own watermark (forgery 4).
- `own_finetune`: OWNER's fine-tune of `watermarked` under a fresh key of his own.
- `spared`: SPARED_OWNER's model with three spare watermarks (OUT/spares/) beside the primary.
- `stripped`: THIEF's copy of `spared`: he read the primary evidence (as any validator can),
  trained that watermark out (informed removal), then added his own watermark.

`ModelCache` keeps each under the pytest cache (`.pytest_cache/d/authchain-models`), keyed by
the recipe and by a digest of everything training reads: the ML service's source, the
watermark hook, the floors, this module, and the torch and scikit-learn versions. A second
`make test` trains nothing; a change to any of those retrains. Files whose hashes no longer
match their ids (a test wrote to them) are trained again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import blake3
import sklearn
import torch

from authchain.chain.crypto import KeyPair
from authchain.chain.types import SigScheme
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.attacks import FineTune, informed_removal
from authchain.ml_service.data import load_digits_split
from authchain.ml_service.outputs import ModelReport
from authchain.ml_service.owner import evidence_for, train_model, train_timm
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.evidence import parse_evidence
from authchain.ml_service.watermark.sketch import artefact_sketch

OWNER = bytes.fromhex("a1" * 32)
CLEAN_OWNER = bytes.fromhex("c1" * 32)
OTHER = bytes.fromhex("e1" * 32)
THIEF = bytes.fromhex("d1" * 32)
SPARED_KEY = KeyPair.from_seed(SigScheme.ED25519, b"\xa2" * 32)
"""The spared model's owner signs his own registration and disputes (`authchain dispute`)."""
SPARED_OWNER = bytes(SPARED_KEY.account)
SEED_PROFILE = {"tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -0.05, "logit_band_high": 0.05}
CLEAN_REASON = (
    "trigger_acc_below_tau_input;trigger_p_above_floor;feat_dist_above_tau_feat;feat_p_above_floor"
)
"""Why a model without the key's watermark fails: every factor, against profile and floors."""

SRC = Path(__file__).resolve().parents[2] / "src" / "authchain"


@dataclass(frozen=True)
class TrainedModel:
    """Artefact and evidence files of one model, with their ids and the training report."""

    result: ModelReport

    @property
    def artefact(self) -> Path:
        return self.result.artefact

    @property
    def evidence(self) -> Path:
        return self.result.evidence

    @property
    def aid(self) -> str:
        return self.result.aid

    @property
    def evidence_hash(self) -> str:
        return self.result.evidence_hash

    @property
    def owner(self) -> str:
        return self.result.owner

    @property
    def artefact_bytes(self) -> bytes:
        return self.artefact.read_bytes()

    @property
    def evidence_bytes(self) -> bytes:
        return self.evidence.read_bytes()

    @property
    def sketch(self) -> bytes:
        """The artefact's function sketch, as its registration declares it."""
        return _sketch_of(self.artefact)


@cache
def _sketch_of(artefact: Path) -> bytes:
    return artefact_sketch(artefact)


@cache
def training_code_digest(*also: Path) -> str:
    """A digest of what a trained model depends on besides its recipe (and of `also`)."""
    digest = blake3.blake3()
    files = [*sorted((SRC / "ml_service").rglob("*.py")), SRC / "watermark.py", SRC / "floors.py"]
    for path in [*files, Path(__file__), *also]:
        digest.update(path.relative_to(SRC.parent.parent).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    digest.update(f"torch {torch.__version__} sklearn {sklearn.__version__}".encode())
    return digest.hexdigest()


class ModelCache:
    """Trained models under `root`, one directory per recipe and training-code digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.trained: list[str] = []
        """Recipes this session had to train (the rest came from disk)."""

    def get(self, name: str, make: Callable[[Path], ModelReport], *recipe: object) -> TrainedModel:
        """The model `make(out_dir)` trains, for `name` and its `recipe` (every input that
        changes what it trains: seeds, epochs, keys, the base model's aid)."""
        key = blake3.blake3(repr((name, recipe, training_code_digest())).encode()).hexdigest()
        entry = self.root / f"{name}-{key[:20]}"
        found = _load(entry)
        if found is not None:
            return found
        shutil.rmtree(entry, ignore_errors=True)  # stale or tampered with
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
        report = make(work)
        body = report.to_json()
        body["artefact"] = str(report.artefact.relative_to(work))
        body["evidence"] = str(report.evidence.relative_to(work))
        for spare in body["spares"]:
            spare["evidence"] = str(Path(spare["evidence"]).relative_to(work))
        (work / "report.json").write_text(json.dumps(body))
        try:
            os.rename(work, entry)  # atomic: a concurrent run finds all of it or none
        except OSError:  # another run got there first
            shutil.rmtree(work, ignore_errors=True)
        self.trained.append(name)
        loaded = _load(entry)
        assert loaded is not None, f"{entry} does not hold what was just trained"
        return loaded


def _load(entry: Path) -> TrainedModel | None:
    try:
        body = json.loads((entry / "report.json").read_text())
    except (OSError, ValueError):
        return None
    body["artefact"] = str(entry / body["artefact"])
    body["evidence"] = str(entry / body["evidence"])
    for spare in body.get("spares", []):
        spare["evidence"] = str(entry / spare["evidence"])
    model = TrainedModel(ModelReport.from_json(body))
    try:
        intact = (
            blake3.blake3(model.artefact_bytes).hexdigest() == model.aid
            and blake3.blake3(model.evidence_bytes).hexdigest() == model.evidence_hash
        )
    except OSError:
        return None
    return model if intact else None


def train_watermarked(models: ModelCache) -> TrainedModel:
    def make(out: Path) -> ModelReport:
        return train_model(
            OWNER, out, tiny=True, epochs=6, seed=0, watermark=True, base=None, spec=EmbedSpec(),
            key_seed=b"\x07" * 32,
        )  # fmt: skip

    return models.get("watermarked", make)


def train_clean(models: ModelCache) -> TrainedModel:
    def make(out: Path) -> ModelReport:
        train_model(
            CLEAN_OWNER, out / "train", tiny=True, epochs=4, seed=1, watermark=False, base=None,
            spec=EmbedSpec(),
        )  # fmt: skip
        return evidence_for(out / "train" / "model.safetensors", CLEAN_OWNER, out, EmbedSpec())

    return models.get("clean", make)


def train_overwrite(models: ModelCache, base: TrainedModel) -> TrainedModel:
    """Forgery 4: THIEF fine-tunes the stolen `base` with THIEF's own watermark."""

    def make(out: Path) -> ModelReport:
        return train_model(
            THIEF, out, tiny=True, epochs=5, seed=5, watermark=True, base=base.artefact,
            spec=EmbedSpec(),
        )  # fmt: skip

    return models.get("overwrite", make, base.aid)


def train_own_finetune(models: ModelCache, base: TrainedModel) -> TrainedModel:
    """The owner of `base` fine-tunes it with a fresh key of their own (a new registration)."""

    def make(out: Path) -> ModelReport:
        return train_model(
            bytes.fromhex(base.owner), out, tiny=True, epochs=5, seed=6, watermark=True,
            base=base.artefact, spec=EmbedSpec(), key_seed=b"\x08" * 32,
        )  # fmt: skip

    return models.get("own-finetune", make, base.aid)


def train_spared(models: ModelCache) -> TrainedModel:
    """SPARED_OWNER's tiny model with its primary watermark and three spares."""

    def make(out: Path) -> ModelReport:
        return train_model(
            SPARED_OWNER, out, tiny=True, epochs=None, seed=0, watermark=True,
            base=None, spec=EmbedSpec(), key_seed=b"\x09" * 32, spares=3,
            spare_secret=b"\x0a" * 32,
        )  # fmt: skip

    return models.get("spared", make)


STRIP = FineTune(epochs=3, lr=3e-3, seed=3)
"""The informed removal that takes the primary watermark below the derivative floor
(docs/SECURITY.md: 3 epochs)."""


def train_stripped(models: ModelCache, base: TrainedModel) -> TrainedModel:
    """THIEF strips `base`'s primary watermark with its evidence, then adds his own."""

    def make(out: Path) -> ModelReport:
        loaded = load_artefact(base.artefact)
        evidence = parse_evidence(base.evidence_bytes)
        stripped, _ = informed_removal(loaded.model, evidence, load_digits_split()[0], STRIP)
        (out / "stripped").mkdir()
        path = out / "stripped" / "model.safetensors"
        path.write_bytes(encode_artefact(stripped, loaded.arch, loaded.config))
        return train_model(
            THIEF, out / "thief", tiny=True, epochs=5, seed=5, watermark=True, base=path,
            spec=EmbedSpec(), key_seed=b"\x0b" * 32,
        )  # fmt: skip

    return models.get("stripped", make, base.aid, STRIP)


TIMM_SPEC = EmbedSpec(signature_weight=2.0)
TIMM_KEY_SEED = b"\x07" * 32  # a fixed key: the same training, and the same outcome, every run
TIMM_EPOCHS = {"test_resnet": 4, "test_efficientnet": 6, "test_vit": 8, "test_convnext": 2}


def train_timm_test_model(models: ModelCache, name: str, owner: bytes) -> TrainedModel:
    """timm's `name` (one of its tiny test configs, at 32x32) trained with the hook for
    `owner`."""

    def make(out: Path) -> ModelReport:
        return train_timm(
            owner, out, model_name=name, input_size=32, epochs=TIMM_EPOCHS[name], seed=0,
            spec=TIMM_SPEC, key_seed=TIMM_KEY_SEED,
        )  # fmt: skip

    return models.get(f"timm-{name}", make, owner.hex(), TIMM_EPOCHS[name], TIMM_SPEC)
