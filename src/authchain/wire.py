"""JSON shapes that more than one service speaks (the seed's `WmProfile`).

The gateway (register bodies) and the ML service (`/verify`) validate a `wm_profile` the same
way, and must: a profile one accepts, the other must not refuse. This module imports nothing
from `chain`, `gateway` or `ml_service`, so both may use it.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class WmProfileJson(BaseModel):
    """Thresholds a model must meet (seed `WmProfile`): finite, taus in [0, 1], low <= high."""

    model_config = ConfigDict(extra="forbid")

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
