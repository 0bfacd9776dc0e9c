"""The ML service over real HTTP on loopback: uploads, /verify, bad input, metrics.

The app is the real one (`create_app`) served by uvicorn in the test's event loop; the models
are the session's tiny trained ones. `HttpMlVerifier` (the chain's client) is checked against it
here too.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authchain.chain.ml_client import HttpMlVerifier
from authchain.chain.types import AccountId, Aid, EvidenceHash, EvidenceRef, WmProfile
from authchain.chain.validation.ml import ArtefactClaim
from authchain.ml_service.config import MlServiceSettings
from authchain.ml_service.main import create_app
from authchain.wire import SKETCH_BYTES
from tests.support.artefacts import bad_artefacts
from tests.support.models import CLEAN_REASON, OTHER, SEED_PROFILE, TrainedModel
from tests.support.servers import serve_app

MAX_ARTEFACT = 2 * 1024 * 1024


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = MlServiceSettings(
        model_root=tmp_path / "models",
        evidence_root=tmp_path / "evidence",
        max_artefact_bytes=MAX_ARTEFACT,
        max_evidence_bytes=64 * 1024,
    )
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        yield client


async def upload(client: httpx.AsyncClient, model: TrainedModel) -> None:
    r = await client.put(f"/artefacts/{model.aid}", content=model.artefact_bytes)
    assert r.status_code == 201, r.text
    r = await client.put(f"/evidence/{model.evidence_hash}", content=model.evidence_bytes)
    assert r.status_code == 201, r.text


def verify_body(model: TrainedModel, **changes: Any) -> dict[str, Any]:
    body = {
        "aid": model.aid,
        "scheme_id": "multi_factor_v2",
        "evidence_hash": model.evidence_hash,
        "wm_profile": dict(SEED_PROFILE),
        "owner": model.owner,
    }
    body.update(changes)
    return body


async def test_health(service: httpx.AsyncClient) -> None:
    assert (await service.get("/health")).json() == {"status": "ok"}


async def test_upload_then_verify_watermarked_and_clean(
    service: httpx.AsyncClient, watermarked: TrainedModel, clean: TrainedModel
) -> None:
    await upload(service, watermarked)
    await upload(service, clean)
    stored = (await service.get(f"/artefacts/{watermarked.aid}")).json()
    assert stored["format"] == "safetensors" and stored["size_bytes"] == len(
        watermarked.artefact_bytes
    )
    again = await service.put(f"/artefacts/{watermarked.aid}", content=watermarked.artefact_bytes)
    assert again.status_code == 201 and again.json()["created"] is False

    ok = (await service.post("/verify", json=verify_body(watermarked))).json()
    assert ok["ok"] is True and ok["reason"] is None
    assert ok["trigger_acc"] >= 0.9 and ok["feat_dist"] <= 0.2
    assert ok["logit_stat"] <= ok["logit_stat_error"]  # the float64 statistic is 0
    assert ok["p_value"] < 1e-50 and ok["latency_ms"] > 0
    repeat = (await service.post("/verify", json=verify_body(watermarked))).json()
    assert {k: v for k, v in repeat.items() if k != "latency_ms"} == {
        k: v for k, v in ok.items() if k != "latency_ms"
    }

    failed = (await service.post("/verify", json=verify_body(clean))).json()
    assert failed["ok"] is False
    assert failed["reason"] == CLEAN_REASON
    assert "tau_input 0.9" in failed["detail"]

    forged = (
        await service.post("/verify", json=verify_body(watermarked, owner=OTHER.hex()))
    ).json()
    assert forged["ok"] is False and forged["reason"] == "owner_mismatch"

    text = (await service.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("ml_verify_requests_total", (("result", "ok"),))] == 2
    assert samples[("ml_verify_requests_total", (("result", "failed"),))] == 2
    assert samples[("ml_uploads_total", (("kind", "artefact"), ("result", "stored")))] == 3


async def test_seed_request_without_owner_is_answered(
    service: httpx.AsyncClient, watermarked: TrainedModel
) -> None:
    await upload(service, watermarked)
    body = verify_body(watermarked)
    del body["owner"]
    answer = (await service.post("/verify", json=body)).json()
    assert answer["ok"] is True
    assert {"ok", "trigger_acc", "feat_dist", "logit_stat", "latency_ms"} <= set(answer)


async def test_http_ml_verifier_against_the_real_service(
    service: httpx.AsyncClient, watermarked: TrainedModel, clean: TrainedModel
) -> None:
    await upload(service, watermarked)
    await upload(service, clean)
    verifier = HttpMlVerifier([str(service.base_url)], timeout_secs=60)

    def claim(model: TrainedModel, sketch: bytes | None = None) -> ArtefactClaim:
        return ArtefactClaim(
            Aid.from_hex(model.aid),
            AccountId.from_hex(model.owner),
            EvidenceRef(
                "multi_factor_v2",
                EvidenceHash.from_hex(model.evidence_hash),
                WmProfile(**SEED_PROFILE),
                sketch=model.sketch if sketch is None else sketch,
            ),
        )

    good = await verifier.verify(claim(watermarked))
    bad = await verifier.verify(claim(clean))
    undeclared = await verifier.verify(claim(watermarked, b""))
    borrowed = await verifier.verify(claim(watermarked, clean.sketch))  # a far model's
    await verifier.aclose()
    assert good.ok and good.trigger_acc is not None and good.trigger_acc >= 0.9
    assert not bad.ok and bad.reason is not None and "trigger_acc" in bad.reason
    for verdict in (undeclared, borrowed):
        assert (verdict.ok, verdict.reason) == (False, "sketch_mismatch"), verdict


async def test_the_sketch_route_gives_what_a_registration_must_declare(
    service: httpx.AsyncClient, watermarked: TrainedModel
) -> None:
    missing = await service.get(f"/artefacts/{watermarked.aid}/sketch")
    assert missing.status_code == 404 and missing.json()["reason"] == "artefact_not_found"
    await upload(service, watermarked)
    answer = await service.get(f"/artefacts/{watermarked.aid.upper()}/sketch")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "aid": watermarked.aid, "sketch": watermarked.sketch.hex(), "bits": SKETCH_BYTES * 8
    }  # fmt: skip
    bad = await service.get("/artefacts/not-hex/sketch")
    assert bad.status_code == 422 and bad.json()["field"] == "aid"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aid": "bb" * 32}, "artefact_not_found"),
        ({"evidence_hash": "cc" * 32}, "evidence_not_found"),
        ({"scheme_id": "rot13_v0"}, "unknown_scheme"),
    ],
)
async def test_unresolvable_claims_are_ok_false_with_reason(
    service: httpx.AsyncClient, watermarked: TrainedModel, changes: dict[str, Any], reason: str
) -> None:
    await upload(service, watermarked)
    response = await service.post("/verify", json=verify_body(watermarked, **changes))
    assert response.status_code == 200
    assert response.json()["ok"] is False and response.json()["reason"] == reason


async def test_corrupt_and_wrong_shape_files_are_ok_false(
    service: httpx.AsyncClient, watermarked: TrainedModel, tmp_path: Path
) -> None:
    import blake3

    truncated = watermarked.artefact_bytes[:1000]
    aid = blake3.blake3(truncated).hexdigest()
    assert (await service.put(f"/artefacts/{aid}", content=truncated)).status_code == 201
    await upload(service, watermarked)
    answer = (await service.post("/verify", json=verify_body(watermarked, aid=aid))).json()
    assert answer["ok"] is False and answer["reason"] == "corrupt_artefact"

    evidence = b'{"scheme_id": "multi_factor_v2"}'
    ev = blake3.blake3(evidence).hexdigest()
    assert (await service.put(f"/evidence/{ev}", content=evidence)).status_code == 201
    answer = (await service.post("/verify", json=verify_body(watermarked, evidence_hash=ev))).json()
    assert answer["ok"] is False and answer["reason"] == "corrupt_evidence"


@pytest.mark.parametrize(
    ("body_changes", "field"),
    [
        ({"aid": "zz" * 32}, "aid"),
        ({"aid": "ab" * 31}, "aid"),
        ({"aid": "../../etc/passwd"}, "aid"),
        ({"evidence_hash": "1234"}, "evidence_hash"),
        ({"owner": "nothex"}, "owner"),
        ({"wm_profile": {**SEED_PROFILE, "tau_input": 1.5}}, "wm_profile.tau_input"),
        ({"wm_profile": {**SEED_PROFILE, "tau_feat": -0.1}}, "wm_profile.tau_feat"),
        ({"wm_profile": {**SEED_PROFILE, "logit_band_low": 0.5}}, "wm_profile"),
        ({"wm_profile": {"tau_input": 0.9}}, "wm_profile.tau_feat"),
        ({"scheme_id": ""}, "scheme_id"),
        ({"sketch": "ab" * 32}, "sketch"),
        (
            {
                "registered": [{"aid": "ab" * 32, "owner": "cd" * 32, "evidence_hash": "ef" * 32}]
                * 65
            },
            "registered",
        ),
        ({"extra": 1}, "extra"),
    ],
)
async def test_malformed_verify_requests_are_422_naming_the_field(
    service: httpx.AsyncClient,
    watermarked: TrainedModel,
    body_changes: dict[str, Any],
    field: str,
) -> None:
    response = await service.post("/verify", json=verify_body(watermarked, **body_changes))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.json()


async def test_nan_threshold_is_422(service: httpx.AsyncClient, watermarked: TrainedModel) -> None:
    import json

    body = verify_body(watermarked, wm_profile={**SEED_PROFILE, "logit_band_high": math.nan})
    response = await service.post(
        "/verify", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["field"] == "wm_profile.logit_band_high"


async def test_upload_errors(
    service: httpx.AsyncClient, watermarked: TrainedModel, tmp_path: Path
) -> None:
    mismatch = await service.put(f"/artefacts/{'ab' * 32}", content=watermarked.artefact_bytes)
    assert mismatch.status_code == 400
    assert mismatch.json()["reason"] == "hash_mismatch" and mismatch.json()["field"] == "aid"
    assert (await service.get(f"/artefacts/{'ab' * 32}")).status_code == 404

    bad_id = await service.put("/artefacts/..%2Fescape", content=b"x")
    assert bad_id.status_code in (404, 422)
    short = await service.put(f"/evidence/{'ab' * 20}", content=b"x")
    assert short.status_code == 422 and short.json()["field"] == "evidence_hash"

    big = b"\x00" * (MAX_ARTEFACT + 1)
    too_big = await service.put(f"/artefacts/{'ab' * 32}", content=big)
    assert too_big.status_code == 413 and too_big.json()["reason"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"\x00" * 65536

    streamed = await service.put(f"/evidence/{'ab' * 32}", content=chunks())
    assert streamed.status_code == 413

    empty = await service.put(f"/evidence/{'ab' * 32}", content=b"")
    assert empty.status_code == 400 and empty.json()["reason"] == "empty_upload"
    leftovers = [*tmp_path.glob("models/*"), *tmp_path.glob("evidence/*")]
    assert leftovers == []  # refused uploads leave no file, temporary or not


def test_ml_service_command_serves_and_honours_model_root(
    tmp_path: Path, watermarked: TrainedModel
) -> None:
    from tests.support.procs import Proc
    from tests.support.servers import free_port

    port = free_port()
    env = {
        "ML_SERVICE_MODEL_ROOT": str(tmp_path / "seed-models"),
        "ML_SERVICE_EVIDENCE_ROOT": str(tmp_path / "evidence"),
    }
    proc = Proc(
        ["ml-service", "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        tmp_path / "ml.log",
        env=env,
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        proc.wait_http(f"{url}/health")
        r = httpx.put(f"{url}/artefacts/{watermarked.aid}", content=watermarked.artefact_bytes)
        assert r.status_code == 201
        assert (tmp_path / "seed-models" / f"{watermarked.aid}.safetensors").exists()
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize(
    "case", ["unknown_arch", "wrong_shapes", "no_arch", "truncated_pt", "pickle_payload"]
)
async def test_bad_artefacts_get_their_reason_over_http(
    service: httpx.AsyncClient, watermarked: TrainedModel, tmp_path: Path, case: str
) -> None:
    import os
    import pickle

    import blake3

    marker = tmp_path / "pwned"
    if case == "pickle_payload":

        class Payload:
            def __reduce__(self) -> tuple[Any, ...]:
                return (os.system, (f"touch {marker}",))

        data, reason = pickle.dumps(Payload(), protocol=2), "unsafe_artefact"
    else:
        data, _, reason = bad_artefacts(watermarked.artefact_bytes)[case]
    aid = blake3.blake3(data).hexdigest()
    assert (await service.put(f"/artefacts/{aid}", content=data)).status_code == 201
    await upload(service, watermarked)
    answer = (await service.post("/verify", json=verify_body(watermarked, aid=aid))).json()
    assert answer["ok"] is False and answer["reason"] == reason, answer
    assert not marker.exists()
