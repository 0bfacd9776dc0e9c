"""`HttpMlVerifier` (seed `ml_client/http.rs`): `V_auth`'s verifier over the ML service's HTTP API.

    POST {base_url}/verify  {aid, scheme_id, evidence_hash, wm_profile, owner,
                             trigger_count, signature_bits, num_classes, floors, registered}
      -> 200 {ok, trigger_acc, feat_dist, logit_stat, latency_ms, reason, detail, p_value,
              feat_p_value, log2_p_value, log2_feat_p_value, lineage}
    POST {base_url}/dispute {owner, earlier_aid, suspect_aid, spare_evidence_hash, floors}
      -> 200 {ok, reason, detail, ...}   (a `TxDispute`'s verdict)

The chain, not the registrant, sets the bar: every request carries genesis' floors, the
strength the tx claims and the earlier registrations to check the candidate against.

Failure handling keeps "unavailable is not invalid" (DESIGN.md §4) honest:
- Connection failures are retried with exponential backoff by httpx's transport (`retries`),
  which retries only errors raised before the request was sent, so nothing is verified twice.
- Any other transport error (read timeout, reset), a 5xx, a 4xx (the service refused a request
  the chain considers well-formed: a version or configuration mismatch) or a body that is not a
  verdict moves on to the next URL in `urls`. The last URL that answered is tried first next
  time.
- When no URL gives a verdict, `MlUnavailable` says what each one did. Only a parsed
  `{"ok": false}` answer is a failed verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from authchain.chain.config import MlClientConfig
from authchain.chain.types import Aid
from authchain.chain.validation.ml import (
    ArtefactClaim,
    Claim,
    DisputeClaim,
    MlUnavailable,
    Verdict,
)
from authchain.floors import DEFAULT_FLOORS, Floors
from authchain.web import Failover

log = logging.getLogger(__name__)

DEFAULT_CONNECT_RETRIES = 2


class VerifyResponse(BaseModel):
    """The ML service's answer (seed `VerifyResponse`); unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    ok: bool
    trigger_acc: float | None = None
    feat_dist: float | None = None
    logit_stat: float | None = None
    latency_ms: float | None = None
    reason: str | None = None
    p_value: float | None = None
    feat_p_value: float | None = None
    log2_p_value: float | None = None
    log2_feat_p_value: float | None = None
    detail: str | None = None
    lineage: list[Aid] = []

    def verdict(self) -> Verdict:
        fields = self.model_dump()
        fields["lineage"] = tuple(self.lineage)
        return Verdict(**fields)


class DisputeResponse(BaseModel):
    """The ML service's answer to a dispute; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    ok: bool
    reason: str | None = None
    detail: str | None = None
    latency_ms: float | None = None
    earlier_log2_p_value: float | None = None
    earlier_log2_feat_p_value: float | None = None
    suspect_log2_p_value: float | None = None

    def verdict(self) -> Verdict:
        return Verdict(
            self.ok, self.reason, latency_ms=self.latency_ms, detail=self.detail,
            log2_p_value=self.earlier_log2_p_value,
            log2_feat_p_value=self.earlier_log2_feat_p_value,
            suspect_log2_p_value=self.suspect_log2_p_value,
        )  # fmt: skip


def get_dispute_request(claim: DisputeClaim, floors: Floors = DEFAULT_FLOORS) -> dict[str, Any]:
    """The `/dispute` body for `claim`, with the chain's floors."""
    return {
        "owner": str(claim.owner),
        "earlier_aid": str(claim.earlier_aid),
        "suspect_aid": str(claim.suspect_aid),
        "spare_evidence_hash": str(claim.spare_evidence_hash),
        "floors": asdict(floors),
    }


def get_verify_request(claim: ArtefactClaim, floors: Floors = DEFAULT_FLOORS) -> dict[str, Any]:
    """The seed's `/verify` body for `claim`, plus the owner the evidence must be bound to, the
    claimed strength, the chain's floors, the registrations it must not derive from and the
    sketch it declares."""
    profile = claim.evidence.wm_profile
    return {
        "aid": str(claim.aid),
        "scheme_id": claim.evidence.scheme_id,
        "evidence_hash": str(claim.evidence.evidence_hash),
        "wm_profile": {
            "tau_input": profile.tau_input,
            "tau_feat": profile.tau_feat,
            "logit_band_low": profile.logit_band_low,
            "logit_band_high": profile.logit_band_high,
        },
        "owner": str(claim.owner),
        "trigger_count": claim.evidence.trigger_count,
        "signature_bits": claim.evidence.signature_bits,
        "num_classes": claim.evidence.num_classes,
        "floors": asdict(floors),
        "registered": [
            {"aid": str(r.aid), "owner": str(r.owner), "evidence_hash": str(r.evidence_hash)}
            for r in claim.registered
        ],
        "sketch": claim.evidence.sketch.hex(),
    }


class HttpMlVerifier:
    """An `MlVerifier` that asks one of several ML service replicas over HTTP."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_secs: float,
        connect_retries: int = DEFAULT_CONNECT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        floors: Floors = DEFAULT_FLOORS,
    ) -> None:
        self.failover = Failover(urls, "HttpMlVerifier")
        self.floors = floors
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_secs),
            transport=transport or httpx.AsyncHTTPTransport(retries=connect_retries),
        )

    @classmethod
    def from_config(cls, config: MlClientConfig, floors: Floors = DEFAULT_FLOORS) -> HttpMlVerifier:
        """A verifier for `[ml_client]`: base_url first, then the fallbacks."""
        return cls(
            [config.base_url, *config.fallback_urls],
            timeout_secs=config.timeout_secs,
            floors=floors,
        )

    async def verify(self, claim: Claim) -> Verdict:
        """Ask each URL in turn, the last one that answered first; raise MlUnavailable."""
        answer: type[VerifyResponse | DisputeResponse] = VerifyResponse
        if isinstance(claim, DisputeClaim):
            path, body = "/dispute", get_dispute_request(claim, self.floors)
            answer = DisputeResponse
        else:
            path, body = "/verify", get_verify_request(claim, self.floors)
        problems: list[str] = []
        for url in self.failover.order():
            try:
                verdict = await self._post_verify(url + path, body, answer)
            except MlUnavailable as exc:
                log.warning("ML service %s: %s", url, exc)
                problems.append(f"{url}: {exc}")
                continue
            self.failover.answered(url)
            return verdict
        raise MlUnavailable("; ".join(problems))

    async def _post_verify(
        self, url: str, body: dict[str, Any], answer: type[VerifyResponse | DisputeResponse]
    ) -> Verdict:
        try:
            response = await self._client.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise MlUnavailable(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise MlUnavailable(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
        if response.status_code != 200:
            raise MlUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            return answer.model_validate_json(response.content).verdict()
        except ValidationError as exc:
            raise MlUnavailable(f"answer is not a verdict: {exc.errors()[0]['msg']}") from exc

    async def health(self) -> dict[str, bool]:
        """Whether each URL answers `GET /health` with `{"status": "ok"}`."""
        out = {}
        for url in self.failover.urls:
            try:
                response = await self._client.get(f"{url}/health")
                out[url] = response.status_code == 200 and response.json().get("status") == "ok"
            except (httpx.HTTPError, ValueError):
                out[url] = False
        return out

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()
