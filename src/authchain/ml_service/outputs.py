"""What an owner's model comes to: the two files written, their ids and how they verify.

`write_model_files` writes an artefact and its evidence and returns a `ModelReport`;
`LocalVerdict` is what a local verification found. Both are typed, and `to_json()` gives the
JSON that `authchain model ... --json` prints. Nothing here parses options or prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import blake3
import torch

from authchain.floors import Floors
from authchain.ml_service.artefact import encode_artefact
from authchain.ml_service.watermark.embed import EmbedSpec, make_evidence, recommend_profile
from authchain.ml_service.watermark.evidence import KeyMaterial
from authchain.ml_service.watermark.verify import FactorStats, Thresholds, compute_stats

ARTEFACT_NAME = "model.safetensors"
EVIDENCE_NAME = "evidence.json"
SPARES_DIR = "spares"
"""OUT/spares/: the spare watermarks' evidence (`spare-<i>.json`) and the secret their keys
derive from (`secret`), which the owner keeps and no command uploads."""
SPARE_SECRET_NAME = "secret"


def spare_evidence_name(index: int) -> str:
    return f"spare-{index}.json"


@dataclass(frozen=True)
class SpareReport:
    """One spare watermark: its evidence file (kept by the owner), the hash the registration
    commits to, and whether the model carries it at the chain's floors."""

    index: int
    evidence_hash: str
    evidence: Path
    passes: bool
    log2_p_value: float
    log2_feat_p_value: float


@dataclass(frozen=True)
class Strength:
    """An evidence's strength: what its registration must state."""

    trigger_count: int
    signature_bits: int
    num_classes: int


@dataclass(frozen=True)
class ModelReport:
    """A model's artefact and evidence files, their ids, and its statistics under the evidence
    against the chain's floors. `wm_profile` is recommended only when the model passes them
    (`passes`); it never loosens the floors."""

    aid: str
    evidence_hash: str
    owner: str
    scheme_id: str
    artefact: Path
    evidence: Path
    wm_profile: Thresholds | None
    strength: Strength
    floors: Floors
    stats: FactorStats
    test_accuracy: float | None
    parameters: int
    spares: tuple[SpareReport, ...] = ()

    @property
    def passes(self) -> bool:
        return self.wm_profile is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "aid": self.aid,
            "evidence_hash": self.evidence_hash,
            "owner": self.owner,
            "scheme_id": self.scheme_id,
            "artefact": str(self.artefact),
            "evidence": str(self.evidence),
            "passes": self.passes,
            "wm_profile": asdict(self.wm_profile) if self.wm_profile is not None else None,
            "strength": asdict(self.strength),
            "floors": asdict(self.floors),
            "stats": asdict(self.stats),
            "test_accuracy": self.test_accuracy,
            "parameters": self.parameters,
            "spares": [{**asdict(spare), "evidence": str(spare.evidence)} for spare in self.spares],
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelReport:
        """The report `to_json` gave (as `authchain model train --json` prints it)."""
        profile = body["wm_profile"]
        return cls(
            aid=body["aid"],
            evidence_hash=body["evidence_hash"],
            owner=body["owner"],
            scheme_id=body["scheme_id"],
            artefact=Path(body["artefact"]),
            evidence=Path(body["evidence"]),
            wm_profile=Thresholds(**profile) if profile is not None else None,
            strength=Strength(**body["strength"]),
            floors=Floors(**body["floors"]),
            stats=FactorStats(**body["stats"]),
            test_accuracy=body["test_accuracy"],
            parameters=body["parameters"],
            spares=tuple(
                SpareReport(**{**spare, "evidence": Path(spare["evidence"])})
                for spare in body.get("spares", [])
            ),
        )


@dataclass(frozen=True)
class LocalVerdict:
    """A local verification: pass, or the first reason it fails (with the statistics, unless
    the evidence is not this owner's)."""

    reason: str | None
    floors: Floors
    stats: FactorStats | None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "reason": self.reason}
        if self.stats is not None:
            body |= {"floors": asdict(self.floors), **asdict(self.stats)}
        return body


def write_model_files(
    model: torch.nn.Module,
    arch: Any,
    config: Any,
    key: KeyMaterial,
    spec: EmbedSpec,
    out_dir: Path,
    floors: Floors,
    test_acc: float | None = None,
    artefact: bytes | None = None,
    artefact_name: str = ARTEFACT_NAME,
    spares: Sequence[KeyMaterial] = (),
    spare_secret: bytes | None = None,
) -> ModelReport:
    """Write the artefact (encoded from `model` unless given) and `key`'s evidence for it to
    `out_dir`, and each spare's evidence with their `spare_secret` to `out_dir/spares/`;
    report their ids, the model's exact statistics and, only if it passes the floors, a
    recommended `wm_profile`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if artefact is None:
        artefact = encode_artefact(model, arch, config)
    evidence = make_evidence(model, key, arch, spec)
    evidence_bytes = evidence.to_bytes()
    (out_dir / artefact_name).write_bytes(artefact)
    (out_dir / EVIDENCE_NAME).write_bytes(evidence_bytes)
    stats = compute_stats(model, evidence, precision="float64")  # exact figures for the owner
    spare_reports = _write_spares(
        model, arch, spec, floors, out_dir / SPARES_DIR, spares, spare_secret
    )
    return ModelReport(
        aid=blake3.blake3(artefact).hexdigest(),
        evidence_hash=blake3.blake3(evidence_bytes).hexdigest(),
        owner=key.owner.hex(),
        scheme_id=evidence.scheme_id,
        artefact=out_dir / artefact_name,
        evidence=out_dir / EVIDENCE_NAME,
        wm_profile=recommend_profile(stats, floors),
        strength=Strength(evidence.trigger_count, evidence.signature_bits, evidence.num_classes),
        floors=floors,
        stats=stats,
        test_accuracy=test_acc,
        parameters=sum(p.numel() for p in model.parameters()),
        spares=spare_reports,
    )


def _write_spares(
    model: torch.nn.Module,
    arch: Any,
    spec: EmbedSpec,
    floors: Floors,
    folder: Path,
    spares: Sequence[KeyMaterial],
    secret: bytes | None,
) -> tuple[SpareReport, ...]:
    if not spares:
        return ()
    if secret is None:
        raise ValueError("spare watermarks need the secret their keys derive from")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    _write_private(folder / SPARE_SECRET_NAME, secret.hex().encode() + b"\n")
    reports = []
    for index, spare in enumerate(spares):
        evidence = make_evidence(model, spare, arch, spec)
        data = evidence.to_bytes()
        path = folder / spare_evidence_name(index)
        _write_private(path, data)
        stats = compute_stats(model, evidence, precision="float64")
        reports.append(
            SpareReport(
                index, blake3.blake3(data).hexdigest(), path,
                recommend_profile(stats, floors) is not None,
                stats.log2_p_value, stats.log2_feat_p_value,
            )
        )  # fmt: skip
    return tuple(reports)


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` readable by its owner only: spare keys are secret until a dispute."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, 0o600)
        out.write(data)
