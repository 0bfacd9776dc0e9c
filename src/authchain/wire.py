"""JSON shapes that more than one component speaks (the seed's `WmProfile`, the floors).

The gateway (register bodies) and the ML service (`/verify`) validate a `wm_profile` the same
way, and must: a profile one accepts, the other must not refuse. The chain's config
(`[genesis.security]`) and the ML service's `/verify` read the floors with one schema. This
module imports nothing from `chain`, `gateway` or `ml_service`, so all of them may use it.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from authchain.floors import DEFAULT_FLOORS, Floors

SKETCH_BYTES = 128
"""Length of a model's function sketch (1024 bits): `EvidenceRef.sketch`, and what the ML
service's `watermark/sketch.py` computes."""


class WmProfileJson(BaseModel):
    """Thresholds a model must meet (seed `WmProfile`): finite, taus in [0, 1], low <= high."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tau_input: float = Field(ge=0.0, le=1.0, description="minimum trigger accuracy")
    tau_feat: float = Field(ge=0.0, le=1.0, description="maximum signature bit error rate")
    logit_band_low: float
    logit_band_high: float

    @field_validator("logit_band_low", "logit_band_high")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> WmProfileJson:
        if self.logit_band_low > self.logit_band_high:
            raise ValueError("logit_band_low must be <= logit_band_high")
        return self


class FloorsJson(BaseModel):
    """The chain's security floors (`authchain.floors.Floors`; its defaults when left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_trigger_count: int = Field(DEFAULT_FLOORS.min_trigger_count, ge=1, le=4096)
    min_signature_bits: int = Field(DEFAULT_FLOORS.min_signature_bits, ge=1, le=4096)
    trigger_p_log2: int = Field(DEFAULT_FLOORS.trigger_p_log2, ge=1, le=1024)
    feature_p_log2: int = Field(DEFAULT_FLOORS.feature_p_log2, ge=1, le=1024)
    derivative_p_log2: int = Field(DEFAULT_FLOORS.derivative_p_log2, ge=1, le=1024)
    max_logit_band: float = Field(DEFAULT_FLOORS.max_logit_band, ge=0, allow_inf_nan=False)

    def to_floors(self) -> Floors:
        return Floors(**self.model_dump())
