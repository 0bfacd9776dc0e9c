"""Tiny models trained once per test session (a few seconds each), for ML service tests.

- `watermarked`: trained with OWNER's watermark; its own evidence.
- `clean`: trained independently without a watermark; honest evidence made afterwards with
  CLEAN_OWNER's key (what an owner without a watermark could produce).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authchain.ml_service.cli import evidence_command, train_command
from authchain.ml_service.watermark.embed import EmbedSpec

OWNER = bytes.fromhex("a1" * 32)
CLEAN_OWNER = bytes.fromhex("c1" * 32)
OTHER = bytes.fromhex("e1" * 32)
THIEF = bytes.fromhex("d1" * 32)
SEED_PROFILE = {"tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -0.05, "logit_band_high": 0.05}
CLEAN_REASON = (
    "trigger_acc_below_tau_input;trigger_p_above_floor;feat_dist_above_tau_feat;feat_p_above_floor"
)
"""Why a model without the key's watermark fails: every factor, against profile and floors."""


@dataclass(frozen=True)
class TrainedModel:
    """Artefact and evidence files of one model, with their ids."""

    artefact: Path
    evidence: Path
    aid: str
    evidence_hash: str
    owner: str
    result: dict[str, Any]

    @property
    def artefact_bytes(self) -> bytes:
        return self.artefact.read_bytes()

    @property
    def evidence_bytes(self) -> bytes:
        return self.evidence.read_bytes()


def _wrap(result: dict[str, Any]) -> TrainedModel:
    return TrainedModel(
        Path(result["artefact"]),
        Path(result["evidence"]),
        result["aid"],
        result["evidence_hash"],
        result["owner"],
        result,
    )


def train_watermarked(out: Path) -> TrainedModel:
    result = train_command(
        OWNER, out, tiny=True, epochs=6, seed=0, watermark=True, base=None, spec=EmbedSpec(),
        key_seed=b"\x07" * 32,
    )  # fmt: skip
    return _wrap(result)


def train_clean(out: Path) -> TrainedModel:
    train_command(
        CLEAN_OWNER, out / "train", tiny=True, epochs=4, seed=1, watermark=False, base=None,
        spec=EmbedSpec(),
    )  # fmt: skip
    return _wrap(
        evidence_command(out / "train" / "model.safetensors", CLEAN_OWNER, out, EmbedSpec())
    )


def train_overwrite(out: Path, base: TrainedModel) -> TrainedModel:
    """Forgery 4: THIEF fine-tunes the stolen `base` with THIEF's own watermark."""
    return _wrap(
        train_command(
            THIEF, out, tiny=True, epochs=5, seed=5, watermark=True, base=base.artefact,
            spec=EmbedSpec(),
        )
    )  # fmt: skip


def train_own_finetune(out: Path, base: TrainedModel) -> TrainedModel:
    """The owner of `base` fine-tunes it with a fresh key of their own (a new registration)."""
    return _wrap(
        train_command(
            bytes.fromhex(base.owner), out, tiny=True, epochs=5, seed=6, watermark=True,
            base=base.artefact, spec=EmbedSpec(), key_seed=b"\x08" * 32,
        )
    )  # fmt: skip
