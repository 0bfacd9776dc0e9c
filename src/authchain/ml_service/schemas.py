"""HTTP schemas of the ML service (seed `schemas.py`), with real validation.

Ids are 64 hex characters (upper case and a `0x` prefix are accepted and normalised), so no
id can name a path outside the service's roots. Thresholds must be finite, taus in [0, 1],
and `logit_band_low <= logit_band_high`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from authchain.wire import SKETCH_BYTES, FloorsJson, WmProfileJson

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


HexPath = Annotated[
    str,
    Path(pattern=r"^(0x)?[0-9a-fA-F]{64}$", description="64 hex characters (BLAKE3-256)"),
    BeforeValidator(_normalise_hex),  # after Path: FastAPI reads the first FieldInfo's schema
]
"""A 64-hex id in a URL path (its pattern shows in OpenAPI)."""


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


WmProfile = WmProfileJson
"""The seed's name for the thresholds in a `/verify` request."""


class RegisteredJson(_Schema):
    """An earlier registration the candidate must not derive from (unless its owner's)."""

    aid: HexId
    owner: HexId
    evidence_hash: HexId


MAX_REGISTERED = 64
"""Most earlier registrations one request may name (the chain names its
`DERIVATIVE_NEIGHBOURS` nearest, and the registration's own earlier models)."""

SKETCH_PATTERN = rf"^([0-9a-f]{{{2 * SKETCH_BYTES}}})?$"


class VerifyRequest(_Schema):
    """Seed `VerifyRequest`, plus the owner the evidence must be bound to, the strength the
    claim states, the chain's floors and the earlier registrations (derivative detection)."""

    aid: HexId
    scheme_id: str = Field(min_length=1, max_length=64)
    evidence_hash: HexId
    wm_profile: WmProfile
    owner: HexId | None = None
    trigger_count: int | None = Field(None, ge=1, le=4096, description="claimed K")
    signature_bits: int | None = Field(None, ge=1, le=4096, description="claimed n")
    num_classes: int | None = Field(None, ge=2, le=4096, description="claimed C")
    floors: FloorsJson = FloorsJson()
    registered: list[RegisteredJson] = Field(default_factory=list, max_length=MAX_REGISTERED)
    sketch: str | None = Field(
        None,
        pattern=SKETCH_PATTERN,
        description="the function sketch the registration declares (hex; empty: none "
        "declared); checked against the artefact when given",
    )


class SketchResponse(BaseModel):
    """An artefact's function sketch (`watermark/sketch.py`): what a registration declares."""

    aid: str
    sketch: str = Field(description="the sketch's bytes in hex")
    bits: int


class VerifyResponse(BaseModel):
    """Seed `VerifyResponse`, plus `reason`, `detail` and `p_value`."""

    ok: bool
    trigger_acc: float | None = None
    feat_dist: float | None = None
    logit_stat: float | None = None
    logit_stat_error: float | None = Field(
        None, description="the float64 logit_stat lies within ± this (0: exact)"
    )
    latency_ms: float
    reason: str | None = Field(None, description="why ok is false: a stable code")
    detail: str | None = Field(None, description="a human explanation of the reason")
    p_value: float | None = Field(
        None, description="chance of the trigger accuracy without the key: P[Bin(K, 1/C) >= hits]"
    )
    feat_p_value: float | None = Field(
        None, description="chance of the signature matches without the key: P[Bin(n, 1/2) >= m]"
    )
    log2_p_value: float | None = Field(None, description="log2 of p_value (finite for any K)")
    log2_feat_p_value: float | None = Field(None, description="log2 of feat_p_value")
    trigger_correct: int | None = None
    trigger_count: int | None = None
    feat_matches: int | None = None
    signature_bits: int | None = None
    lineage: list[str] = Field(
        default_factory=list,
        description="earlier registrations of the same owner whose watermark the model carries",
    )


class DisputeRequest(_Schema):
    """A `TxDispute` to judge: does `earlier_aid` carry the spare watermark whose evidence is
    `spare_evidence_hash` (bound to `owner`) at the claim floors, and `suspect_aid` carry it at
    the derivative floor?"""

    owner: HexId
    earlier_aid: HexId
    suspect_aid: HexId
    spare_evidence_hash: HexId
    floors: FloorsJson = FloorsJson()


class DisputeResponse(BaseModel):
    """A dispute's verdict: `ok` upholds it; otherwise `reason` says which rule failed."""

    ok: bool
    reason: str | None = Field(
        None, description="spare_not_in_earlier, suspect_does_not_carry, or a file's reason"
    )
    detail: str | None = None
    latency_ms: float
    earlier_log2_p_value: float | None = Field(
        None, description="the earlier artefact's trigger p-value under the spare key (log2)"
    )
    earlier_log2_feat_p_value: float | None = None
    suspect_log2_p_value: float | None = Field(
        None, description="both factors together (Fisher), the suspect under the spare key"
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
