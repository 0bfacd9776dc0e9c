"""HTTP schemas of the ML service (seed `schemas.py`), with real validation.

Ids are 64 hex characters (upper case and a `0x` prefix are accepted and normalised), so no
id can name a path outside the service's roots. Thresholds must be finite, taus in [0, 1],
and `logit_band_low <= logit_band_high`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from authchain.wire import WmProfileJson

HEX_ID_PATTERN = r"^[0-9a-f]{64}$"


def _normalise_hex(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower().removeprefix("0x")
    return value


HexId = Annotated[
    str,
    BeforeValidator(_normalise_hex),
    Field(pattern=HEX_ID_PATTERN, description="64 hex characters (BLAKE3-256)"),
]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


WmProfile = WmProfileJson
"""The seed's name for the thresholds in a `/verify` request."""


class VerifyRequest(_Schema):
    """Seed `VerifyRequest`, plus the owner the evidence must be bound to."""

    aid: HexId
    scheme_id: str = Field(min_length=1, max_length=64)
    evidence_hash: HexId
    wm_profile: WmProfile
    owner: HexId | None = None


class VerifyResponse(BaseModel):
    """Seed `VerifyResponse`, plus `reason`, `detail` and `p_value`."""

    ok: bool
    trigger_acc: float | None = None
    feat_dist: float | None = None
    logit_stat: float | None = None
    latency_ms: float
    reason: str | None = Field(None, description="why ok is false: a stable code")
    detail: str | None = Field(None, description="a human explanation of the reason")
    p_value: float | None = Field(
        None, description="chance of the trigger accuracy under random guessing"
    )


class HealthResponse(BaseModel):
    status: str = "ok"


class StoredFile(BaseModel):
    """An uploaded artefact or evidence file."""

    id: str
    kind: str
    format: str
    size_bytes: int
    created: bool = Field(description="false if the same content was already stored")
