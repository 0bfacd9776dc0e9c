"""The ML service's dispute verdict (`POST /dispute`) on real models, over real HTTP: the
owner's spare watermark proves a thief's stripped copy is his; each rule V_auth decides fails
on its own (`test_invalid_dispute_*`), and a missing file is unavailable, never invalid.

The thief (`tests/support/models.py::train_stripped`) read the owner's primary evidence, as
every validator operator can, trained that watermark out and added his own: his copy passes
registration (the primary is gone), and the spare he never saw is still there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from authchain.chain.ml_client.http import HttpMlVerifier
from authchain.chain.types import AccountId, Aid, EvidenceHash
from authchain.chain.validation.ml import DisputeClaim
from authchain.floors import DEFAULT_FLOORS
from authchain.ml_service.config import MlServiceSettings
from authchain.ml_service.main import create_app
from authchain.ml_service.owner import evidence_for
from authchain.ml_service.watermark.embed import EmbedSpec
from tests.support.models import SPARED_OWNER, TrainedModel
from tests.support.servers import serve_app


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = MlServiceSettings(model_root=tmp_path / "models", evidence_root=tmp_path / "ev")
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=120) as client,
    ):
        yield client


async def put(client: httpx.AsyncClient, kind: str, file_id: str, path: Path) -> None:
    r = await client.put(f"/{kind}/{file_id}", content=path.read_bytes())
    assert r.status_code == 201, r.text


async def judge(
    client: httpx.AsyncClient, earlier: TrainedModel, suspect: str, spare: str, owner: str = ""
) -> dict[str, Any]:
    body = {
        "owner": owner or earlier.owner, "earlier_aid": earlier.aid, "suspect_aid": suspect,
        "spare_evidence_hash": spare, "floors": asdict(DEFAULT_FLOORS),
    }  # fmt: skip
    r = await client.post("/dispute", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_a_stripped_copy_carries_the_spare_and_not_the_primary(
    service: httpx.AsyncClient, spared: TrainedModel, stripped: TrainedModel
) -> None:
    await put(service, "artefacts", spared.aid, spared.artefact)
    await put(service, "artefacts", stripped.aid, stripped.artefact)
    await put(service, "evidence", spared.evidence_hash, spared.evidence)
    await put(service, "evidence", stripped.evidence_hash, stripped.evidence)
    # the thief's claim passes: the primary watermark it was checked against is gone
    registered = [{"aid": spared.aid, "owner": spared.owner, "evidence_hash": spared.evidence_hash}]
    profile = stripped.result.wm_profile
    assert profile is not None  # the thief's own watermark passes every floor
    claim = {
        "aid": stripped.aid, "scheme_id": "multi_factor_v2",
        "evidence_hash": stripped.evidence_hash, "wm_profile": asdict(profile),
        "owner": stripped.owner, "registered": registered,
    }  # fmt: skip
    verified = (await service.post("/verify", json=claim)).json()
    assert verified["ok"], verified
    # the first spare he never saw proves it a copy
    spare = spared.result.spares[0]
    await put(service, "evidence", spare.evidence_hash, spare.evidence)
    answer = await judge(service, spared, stripped.aid, spare.evidence_hash)
    assert answer["ok"], answer
    assert answer["earlier_log2_p_value"] <= -64 and answer["earlier_log2_feat_p_value"] <= -32
    assert answer["suspect_log2_p_value"] <= -64
    # the chain's client keeps the statistics with the verdict (the explorer shows them)
    verifier = HttpMlVerifier([str(service.base_url)], timeout_secs=120)
    claim_ = DisputeClaim(
        AccountId.from_hex(spared.owner), Aid.from_hex(spared.aid), Aid.from_hex(stripped.aid),
        EvidenceHash.from_hex(spare.evidence_hash),
    )  # fmt: skip
    verdict = await verifier.verify(claim_)
    await verifier.aclose()
    assert verdict.ok and verdict.suspect_log2_p_value == answer["suspect_log2_p_value"]
    assert verdict.log2_p_value == answer["earlier_log2_p_value"]
    assert verdict.log2_feat_p_value == answer["earlier_log2_feat_p_value"]


async def test_invalid_dispute_suspect_that_does_not_carry_the_spare(
    service: httpx.AsyncClient, spared: TrainedModel, clean: TrainedModel
) -> None:
    spare = spared.result.spares[1]
    await put(service, "artefacts", spared.aid, spared.artefact)
    await put(service, "artefacts", clean.aid, clean.artefact)
    await put(service, "evidence", spare.evidence_hash, spare.evidence)
    answer = await judge(service, spared, clean.aid, spare.evidence_hash)
    assert not answer["ok"] and answer["reason"] == "suspect_does_not_carry", answer
    assert answer["suspect_log2_p_value"] > -64


async def test_invalid_dispute_earlier_artefact_that_does_not_carry_its_own_spare(
    service: httpx.AsyncClient, spared: TrainedModel, stripped: TrainedModel, tmp_path: Path
) -> None:
    """An owner who committed a 'spare' he never embedded (honest evidence for a fresh key)
    cannot use it: the earlier artefact must carry the spare at the claim floors."""
    fake = evidence_for(spared.artefact, SPARED_OWNER, tmp_path / "fake", EmbedSpec())
    await put(service, "artefacts", spared.aid, spared.artefact)
    await put(service, "artefacts", stripped.aid, stripped.artefact)
    await put(service, "evidence", fake.evidence_hash, fake.evidence)
    answer = await judge(service, spared, stripped.aid, fake.evidence_hash)
    assert not answer["ok"] and answer["reason"] == "spare_not_in_earlier", answer
    assert "trigger_p_above_floor" in answer["detail"]


async def test_a_spare_bound_to_another_owner_and_missing_files(
    service: httpx.AsyncClient, spared: TrainedModel, stripped: TrainedModel
) -> None:
    spare = spared.result.spares[2]
    answer = await judge(service, spared, stripped.aid, spare.evidence_hash)
    assert answer["reason"] == "evidence_not_found"  # not uploaded yet: unavailable
    await put(service, "evidence", spare.evidence_hash, spare.evidence)
    answer = await judge(service, spared, stripped.aid, spare.evidence_hash)
    assert answer["reason"] == "artefact_not_found"
    await put(service, "artefacts", spared.aid, spared.artefact)
    await put(service, "artefacts", stripped.aid, stripped.artefact)
    answer = await judge(service, spared, stripped.aid, spare.evidence_hash, owner="ab" * 32)
    assert not answer["ok"] and answer["reason"] == "spare_not_in_earlier"
    assert "owner_mismatch" in answer["detail"]
