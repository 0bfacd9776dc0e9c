"""HttpMlVerifier against real HTTP servers on loopback (scripted stand-ins for the ML service).

The real ML service is exercised end to end in tests/e2e; here each server answers what the
test scripts, so every failure path of the client can be reached on purpose.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from authchain.chain.ml_client import HttpMlVerifier
from authchain.chain.types import AccountId, Aid, EvidenceHash, EvidenceRef, WmProfile
from authchain.chain.validation.ml import ArtefactClaim, MlUnavailable
from authchain.wire import SKETCH_BYTES
from tests.support.servers import free_port, serve_app

CLAIM = ArtefactClaim(
    Aid(b"\xbb" * 32),
    AccountId(b"\xaa" * 32),
    EvidenceRef(
        "multi_factor_v2",
        EvidenceHash(b"\xcc" * 32),
        WmProfile(0.9, 0.2, -0.05, 0.05),
        sketch=b"\xdd" * SKETCH_BYTES,
    ),
)
PASS = {
    "ok": True,
    "trigger_acc": 1.0,
    "feat_dist": 0.03,
    "logit_stat": 0.01,
    "latency_ms": 12.5,
    "reason": None,
    "p_value": 1e-10,
}


@dataclass
class Script:
    """What one stand-in server answers, and the bodies it received."""

    status: int = 200
    body: Any = field(default_factory=lambda: dict(PASS))
    delay: float = 0.0
    raw: bytes | None = None
    received: list[dict[str, Any]] = field(default_factory=list)


def make_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.post("/verify")
    async def verify(request: Request) -> Response:
        script.received.append(await request.json())
        await asyncio.sleep(script.delay)
        if script.raw is not None:
            return Response(script.raw, script.status, media_type="application/json")
        return Response(json.dumps(script.body), script.status, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    async with serve_app(make_app(script)) as url:
        yield url, script


@pytest.fixture
async def second() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    async with serve_app(make_app(script)) as url:
        yield url, script


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_verify_sends_seed_request_and_parses_verdict(server: tuple[str, Script]) -> None:
    url, script = server
    verifier = HttpMlVerifier([url], timeout_secs=5)
    verdict = await verifier.verify(CLAIM)
    await verifier.aclose()
    assert verdict.ok and verdict.trigger_acc == 1.0 and verdict.feat_dist == 0.03
    assert verdict.p_value == 1e-10 and verdict.latency_ms == 12.5
    assert script.received == [
        {
            "aid": "bb" * 32,
            "scheme_id": "multi_factor_v2",
            "evidence_hash": "cc" * 32,
            "wm_profile": {
                "tau_input": 0.9,
                "tau_feat": 0.2,
                "logit_band_low": -0.05,
                "logit_band_high": 0.05,
            },
            "owner": "aa" * 32,
            "trigger_count": 100,
            "signature_bits": 2048,
            "num_classes": 10,
            "floors": {
                "min_trigger_count": 64,
                "min_signature_bits": 1024,
                "trigger_p_log2": 64,
                "feature_p_log2": 32,
                "derivative_p_log2": 64,
                "max_logit_band": 0.05,
            },
            "registered": [],
            "sketch": "dd" * SKETCH_BYTES,
        }
    ]


async def test_failed_verdict_is_an_answer_not_unavailability(server: tuple[str, Script]) -> None:
    url, script = server
    script.body = {"ok": False, "reason": "artefact_not_found", "trigger_acc": 0.0}
    verifier = HttpMlVerifier([url], timeout_secs=5)
    verdict = await verifier.verify(CLAIM)
    await verifier.aclose()
    assert not verdict.ok and verdict.reason == "artefact_not_found"


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        (503, b'{"detail":"overloaded"}', "HTTP 503"),
        (500, b"Internal Server Error", "HTTP 500"),
        (422, b'{"detail":"bad aid"}', "HTTP 422"),
        (200, b"not json", "not a verdict"),
        (200, b'{"trigger_acc": 1.0}', "not a verdict"),
    ],
)
async def test_no_verdict_is_unavailable(
    server: tuple[str, Script], status: int, raw: bytes, expected: str
) -> None:
    url, script = server
    script.status, script.raw = status, raw
    verifier = HttpMlVerifier([url], timeout_secs=5)
    with pytest.raises(MlUnavailable, match=expected):
        await verifier.verify(CLAIM)
    await verifier.aclose()


async def test_timeout_is_unavailable(server: tuple[str, Script]) -> None:
    url, script = server
    script.delay = 2.0
    verifier = HttpMlVerifier([url], timeout_secs=0.2)
    with pytest.raises(MlUnavailable, match="timed out"):
        await verifier.verify(CLAIM)
    await verifier.aclose()


async def test_connection_refused_is_unavailable_after_retries() -> None:
    url = dead_url()
    verifier = HttpMlVerifier([url], timeout_secs=1, connect_retries=1)
    with pytest.raises(MlUnavailable, match="ConnectError"):
        await verifier.verify(CLAIM)
    await verifier.aclose()


async def test_fails_over_to_next_url_and_remembers_it(
    server: tuple[str, Script], second: tuple[str, Script]
) -> None:
    (bad_url, bad), (good_url, good) = server, second
    bad.status, bad.raw = 503, b"{}"
    verifier = HttpMlVerifier([dead_url(), bad_url, good_url], timeout_secs=5, connect_retries=0)
    assert (await verifier.verify(CLAIM)).ok
    assert (await verifier.verify(CLAIM)).ok
    await verifier.aclose()
    assert len(bad.received) == 1  # the second call went straight to the URL that answered
    assert len(good.received) == 2


async def test_all_urls_failing_names_each(
    server: tuple[str, Script], second: tuple[str, Script]
) -> None:
    (url_a, a), (url_b, b) = server, second
    a.status, a.raw = 500, b"boom"
    b.status, b.raw = 502, b"gateway"
    verifier = HttpMlVerifier([url_a, url_b], timeout_secs=5)
    with pytest.raises(MlUnavailable) as info:
        await verifier.verify(CLAIM)
    await verifier.aclose()
    assert f"{url_a}: HTTP 500" in str(info.value) and f"{url_b}: HTTP 502" in str(info.value)


async def test_health_reports_each_url(server: tuple[str, Script]) -> None:
    url, _ = server
    dead = dead_url()
    verifier = HttpMlVerifier([url, dead], timeout_secs=1, connect_retries=0)
    assert await verifier.health() == {url: True, dead: False}
    await verifier.aclose()


def test_needs_a_url() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HttpMlVerifier([], timeout_secs=1)
