"""Data availability: fetch a missing artefact or evidence file from peer ML services.

A registration's files are uploaded once, to one validator's ML service. Every other
validator's service, asked to verify a claim whose files it lacks, fetches them by id from its
`peers` (`GET /artefacts/{aid}/content`, `GET /evidence/{hash}/content`) and stores them through
the same path as an upload, which keeps a file only if its BLAKE3 is the id it was asked for.
A peer that sends other bytes is skipped. A file no peer has stays missing: the verdict is then
`artefact_not_found` / `evidence_not_found`, which the chain reads as "unavailable", never as
invalid. Peers serve only what they hold themselves, so a fetch never recurses.

Evidence is served only to validators: each evidence request is signed with this validator's
key (`peer_auth.RequestSigner`). Artefacts are public, and fetched unsigned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from authchain.ml_service.peer_auth import RequestSigner
from authchain.ml_service.registry import FilesystemStore, UploadError

log = logging.getLogger(__name__)


class PeerFetcher:
    """Fetches files this service lacks from its peers, checking each one's hash."""

    def __init__(
        self,
        store: FilesystemStore,
        peers: Sequence[str],
        *,
        max_artefact_bytes: int,
        max_evidence_bytes: int,
        timeout_secs: float = 30.0,
        signer: RequestSigner | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.peers = [p.rstrip("/") for p in peers]
        self.limits = {"artefacts": max_artefact_bytes, "evidence": max_evidence_bytes}
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_secs))
        self.fetched = 0

    async def ensure(self, aid: str, evidence_hashes: Sequence[str]) -> None:
        """Fetch the artefact `aid` and each evidence file that is not stored yet."""
        if not self.peers:
            return
        if self.store.find_artefact(aid) is None:
            await self.fetch("artefacts", aid)
        for evidence_hash in dict.fromkeys(evidence_hashes):
            if self.store.find_evidence(evidence_hash) is None:
                await self.fetch("evidence", evidence_hash)

    async def fetch(self, kind: str, file_id: str) -> bool:
        """Try each peer in turn; True once one sent bytes whose hash is `file_id`."""
        put = self.store.put_artefact if kind == "artefacts" else self.store.put_evidence
        path = f"/{kind}/{file_id}/content"
        for peer in self.peers:
            headers = {}
            if kind == "evidence" and self.signer is not None:
                headers = self.signer.headers("GET", httpx.URL(peer + path).path)
            try:
                async with self._client.stream("GET", peer + path, headers=headers) as response:
                    if response.status_code != 200:
                        if response.status_code == 401:
                            await response.aread()
                            log.warning(
                                "peer %s refused %s %s: %s",
                                peer,
                                kind,
                                file_id[:12],
                                response.text[:300],
                            )
                        continue
                    await put(file_id, response.aiter_bytes(), self.limits[kind])
            except httpx.HTTPError as exc:
                log.info("peer %s did not serve %s %s: %s", peer, kind, file_id[:12], exc)
                continue
            except UploadError as exc:
                log.warning("peer %s sent a bad %s %s: %s", peer, kind, file_id[:12], exc.detail)
                continue
            self.fetched += 1
            log.info("fetched %s %s from peer %s (hash checked)", kind, file_id[:12], peer)
            return True
        return False

    async def aclose(self) -> None:
        await self._client.aclose()
