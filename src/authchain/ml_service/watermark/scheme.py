"""Watermark schemes by `scheme_id` (a registry, like the architecture registry).

A scheme turns evidence bytes into `Evidence` and a (model, evidence) pair into factor
statistics. `multi_factor_v2` is what every tool writes; `multi_factor_v1` stays, so that its
registrations keep verifying and keep counting in derivative detection. A new scheme registers
itself here and every validator that runs this service version understands it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from torch import nn

from authchain.ml_service.watermark import verify
from authchain.ml_service.watermark.evidence import (
    SCHEME_V1,
    SCHEME_V2,
    Evidence,
    parse_evidence,
)


class WatermarkScheme(Protocol):
    """What the verifier needs from a scheme."""

    scheme_id: str

    def parse_evidence(self, data: bytes) -> Evidence:
        """Evidence from file bytes; raise an error with `.reason` and `.detail`."""
        ...

    def compute_stats(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        evidence: Evidence,
        device: str,
        precision: verify.Precision = "fast",
        priors: Sequence[Evidence] = (),
    ) -> tuple[verify.FactorStats, list[verify.CarryStats]]:
        """The factor statistics, and in the same pass the carry statistics of `priors`;
        raise an error with `.reason` if they cannot be computed."""
        ...


class MultiFactor:
    """Backdoor triggers + a weight signature + logit commitment (DESIGN.md §5): v2 reads the
    signature from what function-preserving rewrites cannot change (`signature.py`), v1 from
    one layer in stored order (Uchida et al.)."""

    def __init__(self, scheme_id: str) -> None:
        self.scheme_id = scheme_id

    def parse_evidence(self, data: bytes) -> Evidence:
        return parse_evidence(data)

    def compute_stats(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        evidence: Evidence,
        device: str,
        precision: verify.Precision = "fast",
        priors: Sequence[Evidence] = (),
    ) -> tuple[verify.FactorStats, list[verify.CarryStats]]:
        verify.check_model_fits(model, input_shape, evidence)
        return verify.compute_stats_and_carry(model, evidence, priors, device, precision)


SCHEMES: dict[str, WatermarkScheme] = {
    SCHEME_V2: MultiFactor(SCHEME_V2),
    SCHEME_V1: MultiFactor(SCHEME_V1),
}


def get_scheme(scheme_id: str) -> WatermarkScheme | None:
    """The registered scheme, or None."""
    return SCHEMES.get(scheme_id)
