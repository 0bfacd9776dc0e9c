"""`HttpMlVerifier` (seed `ml_client/http.rs`): `V_auth`'s verifier over the ML service's HTTP API.

    POST {base_url}/verify  {aid, scheme_id, evidence_hash, wm_profile, owner}
      -> 200 {ok, trigger_acc, feat_dist, logit_stat, latency_ms, reason, p_value}

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
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from authchain.chain.config import MlClientConfig
from authchain.chain.validation.ml import ArtefactClaim, MlUnavailable, Verdict
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


def get_verify_request(claim: ArtefactClaim) -> dict[str, Any]:
    """The seed's `/verify` body for `claim`, plus the owner the evidence must be bound to."""
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
    ) -> None:
        self.failover = Failover(urls, "HttpMlVerifier")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_secs),
            transport=transport or httpx.AsyncHTTPTransport(retries=connect_retries),
        )

    @classmethod
    def from_config(cls, config: MlClientConfig) -> HttpMlVerifier:
        """A verifier for `[ml_client]`: base_url first, then the fallbacks."""
        return cls([config.base_url, *config.fallback_urls], timeout_secs=config.timeout_secs)

    async def verify(self, claim: ArtefactClaim) -> Verdict:
        """Ask each URL in turn, the last one that answered first; raise MlUnavailable."""
        body = get_verify_request(claim)
        problems: list[str] = []
        for url in self.failover.order():
            try:
                verdict = await self._post_verify(url, body)
            except MlUnavailable as exc:
                log.warning("ML service %s: %s", url, exc)
                problems.append(f"{url}: {exc}")
                continue
            self.failover.answered(url)
            return verdict
        raise MlUnavailable("; ".join(problems))

    async def _post_verify(self, url: str, body: dict[str, Any]) -> Verdict:
        try:
            response = await self._client.post(f"{url}/verify", json=body)
        except httpx.TimeoutException as exc:
            raise MlUnavailable(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise MlUnavailable(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
        if response.status_code != 200:
            raise MlUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            answer = VerifyResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise MlUnavailable(f"answer is not a verdict: {exc.errors()[0]['msg']}") from exc
        return Verdict(**answer.model_dump())

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
