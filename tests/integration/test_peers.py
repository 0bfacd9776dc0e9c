"""Data availability: a validator's ML service fetches missing files from peers by hash, and
keeps only bytes whose BLAKE3 is the id it asked for (real HTTP servers on loopback)."""

from __future__ import annotations

from pathlib import Path

import blake3
from fastapi import FastAPI, Response

from authchain.ml_service.peers import PeerFetcher
from authchain.ml_service.registry import FilesystemStore
from tests.support.servers import serve_app

ARTEFACT = b"\x00" * 64 + b"the owner's model"
AID = blake3.blake3(ARTEFACT).hexdigest()
EVIDENCE = b'{"evidence": true}'
EVIDENCE_HASH = blake3.blake3(EVIDENCE).hexdigest()


def peer(files: dict[str, bytes]) -> FastAPI:
    app = FastAPI()

    @app.get("/{kind}/{file_id}/content")
    async def content(kind: str, file_id: str) -> Response:
        if file_id not in files:
            return Response(status_code=404)
        return Response(files[file_id], media_type="application/octet-stream")

    return app


def store(tmp_path: Path) -> FilesystemStore:
    (tmp_path / "models").mkdir()
    (tmp_path / "evidence").mkdir()
    return FilesystemStore(tmp_path / "models", tmp_path / "evidence")


async def test_a_lying_peer_is_skipped_and_an_honest_one_supplies_the_files(
    tmp_path: Path,
) -> None:
    liar = peer({AID: b"a different model", EVIDENCE_HASH: b'{"evidence": false}'})
    honest = peer({AID: ARTEFACT, EVIDENCE_HASH: EVIDENCE})
    files = store(tmp_path)
    async with serve_app(liar) as liar_url, serve_app(honest) as honest_url:
        fetcher = PeerFetcher(
            files, [liar_url, honest_url], max_artefact_bytes=1 << 20, max_evidence_bytes=1 << 20
        )
        await fetcher.ensure(AID, [EVIDENCE_HASH])
        await fetcher.aclose()
    artefact, evidence = files.find_artefact(AID), files.find_evidence(EVIDENCE_HASH)
    assert artefact is not None and artefact.read_bytes() == ARTEFACT
    assert evidence is not None and evidence.read_bytes() == EVIDENCE
    assert fetcher.fetched == 2


async def test_files_no_peer_has_stay_missing(tmp_path: Path) -> None:
    files = store(tmp_path)
    async with serve_app(peer({AID: b"not it"})) as url:
        fetcher = PeerFetcher(files, [url], max_artefact_bytes=1 << 20, max_evidence_bytes=1024)
        await fetcher.ensure(AID, [EVIDENCE_HASH])
        await fetcher.aclose()
    assert files.find_artefact(AID) is None and files.find_evidence(EVIDENCE_HASH) is None
    assert fetcher.fetched == 0
