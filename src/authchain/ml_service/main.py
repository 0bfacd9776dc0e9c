"""The ML service's FastAPI app (seed `main.py`).

    GET  /health                          {"status": "ok"}
    POST /verify                          VerifyRequest -> VerifyResponse (always 200 when the
                                          request is well-formed; ok=false carries a reason)
    POST /dispute                         DisputeRequest -> DisputeResponse (a TxDispute's verdict)
    PUT  /artefacts/{aid}                 raw artefact bytes; stored only if BLAKE3 == aid
    GET  /artefacts/{aid}                 whether it is stored (404 if not)
    GET  /artefacts/{aid}/content         the stored bytes (peers fetch missing files here)
    PUT  /evidence/{evidence_hash}        raw evidence bytes; stored only if BLAKE3 matches
    GET  /evidence/{evidence_hash}        whether it is stored (404 if not)
    GET  /evidence/{evidence_hash}/content  the stored bytes, only for a request signed by a
                                          validator key (`peer_auth.py`); anyone else: 401
    GET  /metrics                         Prometheus text format

Malformed input is a 422 naming the field; an upload over its limit is a 413; a hash that does
not match is a 400. A verification that fails for a reason of this machine rather than of the
files (out of memory, a bug) is a 503: the chain reads it as "unavailable", never as invalid.
Verification runs in a worker thread so the event loop keeps answering. Before it runs, files
the request names but this service lacks are fetched from `peers` by hash (`peers.py`).
`uvicorn authchain.ml_service.main:app` works as in the seed; `authchain ml-service` is the
usual way to start it.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar

import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.status import HTTP_201_CREATED

from authchain import __version__
from authchain.ml_service.config import MlServiceSettings, get_settings
from authchain.ml_service.errors import MlServiceError
from authchain.ml_service.models import set_allowed_timm_models
from authchain.ml_service.peer_auth import (
    PeerAuthenticator,
    PeerAuthError,
    RequestSigner,
    read_peer_key,
)
from authchain.ml_service.peers import PeerFetcher
from authchain.ml_service.registry import FilesystemStore, UploadError
from authchain.ml_service.schemas import (
    DisputeRequest,
    DisputeResponse,
    HealthResponse,
    HexPath,
    SketchResponse,
    StoredFile,
    VerifyRequest,
    VerifyResponse,
)
from authchain.ml_service.verifier import Verifier
from authchain.web import (
    ERROR_RESPONSES,
    ApiError,
    BodyLimit,
    ErrorBody,
    add_metrics_route,
    install_error_handlers,
)

log = logging.getLogger(__name__)


class ServiceMetrics:
    """The service's Prometheus metrics, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.verify_requests = Counter(
            "ml_verify_requests",
            "Verification requests, by result (ok / failed)",
            ["result"],
            registry=self.registry,
        )
        self.verify_seconds = Histogram(
            "ml_verify_seconds",
            "Time to answer a verification request",
            registry=self.registry,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.evidence_reads = Counter(
            "ml_evidence_reads",
            "Requests for an evidence file's bytes, by result (served or the refusal's reason)",
            ["result"],
            registry=self.registry,
        )
        self.uploads = Counter(
            "ml_uploads",
            "Uploads, by kind and result",
            ["kind", "result"],
            registry=self.registry,
        )


class Service:
    """What the handlers use: settings, store, verifier, metrics."""

    def __init__(self, settings: MlServiceSettings) -> None:
        self.settings = settings
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        set_allowed_timm_models(settings.timm_models)
        self.store = FilesystemStore(
            settings.model_root, settings.evidence_root, max_store_bytes=settings.max_store_bytes
        )
        self.verifier = Verifier(
            self.store,
            device=settings.device,
            precision=settings.precision,
            model_cache_size=settings.model_cache_size,
            stats_cache_size=settings.stats_cache_size,
        )
        self.metrics = ServiceMetrics()
        auth = settings.peer_auth
        self.authenticator = PeerAuthenticator(
            auth.chain_id,
            [(v.scheme, bytes.fromhex(v.public_key)) for v in auth.validators],
            auth.max_clock_skew_secs,
        )
        signer = None
        if auth.key_file is not None and auth.chain_id is not None:
            signer = RequestSigner(read_peer_key(auth.key_file), auth.chain_id)
        elif settings.peers:
            log.warning(
                "peers are set but peer_auth.key_file is not: peers will refuse to "
                "send this service evidence, so claims it lacks stay unavailable"
            )
        self.peers = PeerFetcher(
            self.store,
            settings.peers,
            max_artefact_bytes=settings.max_artefact_bytes,
            max_evidence_bytes=settings.max_evidence_bytes,
            signer=signer,
        )


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/health", tags=["service"])
async def health() -> HealthResponse:
    """Liveness."""
    return HealthResponse()


R = TypeVar("R", VerifyResponse, DisputeResponse)


async def _judge(service: Service, job: Callable[[], R]) -> R:
    """Run a verification in a worker thread and count it; a fault of this machine (memory,
    a bug) is a 503, never an answer."""
    started = time.perf_counter()
    try:
        response = await run_in_threadpool(job)
    except Exception as exc:
        log.exception("verification failed unexpectedly")
        service.metrics.verify_requests.labels(result="error").inc()
        raise ApiError(
            503, "verifier_error", f"verification could not finish here: {type(exc).__name__}"
        ) from exc
    service.metrics.verify_seconds.observe(time.perf_counter() - started)
    service.metrics.verify_requests.labels(result="ok" if response.ok else "failed").inc()
    return response


@router.post("/verify", tags=["verification"])
async def verify(body: VerifyRequest, service: ServiceDep) -> VerifyResponse:
    """Check that the artefact `aid` carries the watermark its evidence describes, meets the
    chain's floors, and carries no earlier registration's watermark but its owner's."""
    evidence = [body.evidence_hash, *(r.evidence_hash for r in body.registered)]
    await service.peers.ensure(body.aid, evidence)
    return await _judge(service, partial(service.verifier.verify, body))


@router.post("/dispute", tags=["verification"])
async def dispute(body: DisputeRequest, service: ServiceDep) -> DisputeResponse:
    """Judge a dispute: the earlier artefact carries the spare watermark (its evidence revealed
    for this dispute) at the claim floors, and the suspect carries it at the derivative floor."""
    await service.peers.ensure(body.earlier_aid, [body.spare_evidence_hash])
    await service.peers.ensure(body.suspect_aid, [])
    return await _judge(service, partial(service.verifier.dispute, body))


def _authorize(service: Service, request: Request, kind: str) -> None:
    """Uploads need the service's bearer token, where one is set."""
    token = service.settings.upload_token
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        service.metrics.uploads.labels(kind=kind, result="unauthorized").inc()
        raise ApiError(401, "unauthorized", "uploads need `Authorization: Bearer <upload_token>`")


async def _store(
    service: Service, request: Request, kind: str, file_id: str, limit: int
) -> StoredFile:
    _authorize(service, request, kind)
    put = service.store.put_artefact if kind == "artefact" else service.store.put_evidence
    try:
        result = await put(file_id, request.stream(), limit)
    except UploadError as exc:
        service.metrics.uploads.labels(kind=kind, result=exc.reason).inc()
        field = ("aid" if kind == "artefact" else "evidence_hash") if exc.status == 400 else None
        raise ApiError(exc.status, exc.reason, exc.detail, field) from exc
    service.metrics.uploads.labels(kind=kind, result="stored").inc()
    log.info("stored %s %s (%s, %d bytes)", kind, file_id[:12], result.format, result.size_bytes)
    return StoredFile(
        id=file_id,
        kind=kind,
        format=result.format,
        size_bytes=result.size_bytes,
        created=result.created,
    )


def _describe(kind: str, file_id: str, path: Path | None) -> StoredFile:
    if path is None:
        raise ApiError(404, f"{kind}_not_found", f"no {kind} {file_id} is stored")
    return StoredFile(
        id=file_id,
        kind=kind,
        format=path.suffix.lstrip("."),
        size_bytes=path.stat().st_size,
        created=False,
    )


@router.put("/artefacts/{aid}", status_code=HTTP_201_CREATED, tags=["files"])
async def put_artefact(aid: HexPath, request: Request, service: ServiceDep) -> StoredFile:
    """Upload a model artefact (safetensors or .pt); kept only if BLAKE3(bytes) == aid."""
    return await _store(service, request, "artefact", aid, service.settings.max_artefact_bytes)


@router.get("/artefacts/{aid}", tags=["files"])
async def get_artefact(aid: HexPath, service: ServiceDep) -> StoredFile:
    """Whether an artefact is stored, and its format and size."""
    return _describe("artefact", aid, service.store.find_artefact(aid))


@router.get("/artefacts/{aid}/sketch", tags=["files"])
async def get_artefact_sketch(aid: HexPath, service: ServiceDep) -> SketchResponse:
    """The stored artefact's function sketch: what its registration must declare
    (`EvidenceRef.sketch`). 404 `artefact_not_found` until it is uploaded."""
    try:
        sketch = await run_in_threadpool(service.verifier.sketch, aid)
    except MlServiceError as exc:
        status = 404 if exc.reason == "artefact_not_found" else 422
        raise ApiError(status, exc.reason, exc.detail) from exc
    return SketchResponse(aid=aid, sketch=sketch.hex(), bits=len(sketch) * 8)


@router.get("/artefacts/{aid}/content", tags=["files"], response_class=FileResponse)
async def get_artefact_content(aid: HexPath, service: ServiceDep) -> FileResponse:
    """The stored artefact's bytes (what peers fetch; BLAKE3 of them is `aid`)."""
    return _content("artefact", aid, service.store.find_artefact(aid))


@router.put("/evidence/{evidence_hash}", status_code=HTTP_201_CREATED, tags=["files"])
async def put_evidence(evidence_hash: HexPath, request: Request, service: ServiceDep) -> StoredFile:
    """Upload an evidence file; kept only if BLAKE3(bytes) == evidence_hash."""
    return await _store(
        service, request, "evidence", evidence_hash, service.settings.max_evidence_bytes
    )


@router.get("/evidence/{evidence_hash}", tags=["files"])
async def get_evidence(evidence_hash: HexPath, service: ServiceDep) -> StoredFile:
    """Whether an evidence file is stored."""
    return _describe("evidence", evidence_hash, service.store.find_evidence(evidence_hash))


@router.get(
    "/evidence/{evidence_hash}/content",
    tags=["files"],
    response_class=FileResponse,
    responses={401: {"model": ErrorBody, "description": "not a validator's signed request"}},
)
async def get_evidence_content(
    evidence_hash: HexPath, request: Request, service: ServiceDep
) -> FileResponse:
    """The stored evidence file's bytes, for a validator peer only: the request must be signed
    by a key in `peer_auth.validators` (evidence holds the watermark key); anyone else gets
    401 with the reason."""
    try:
        peer = service.authenticator.check("GET", request.url.path, request.headers)
    except PeerAuthError as exc:
        service.metrics.evidence_reads.labels(result=exc.reason).inc()
        raise ApiError(401, exc.reason, exc.detail) from exc
    path = service.store.find_evidence(evidence_hash)
    service.metrics.evidence_reads.labels(result="served" if path else "not_found").inc()
    if path is not None:
        log.info("served evidence %s to validator %s", evidence_hash[:12], peer[:24])
    return _content("evidence", evidence_hash, path)


def _content(kind: str, file_id: str, path: Path | None) -> FileResponse:
    if path is None:
        raise ApiError(404, f"{kind}_not_found", f"no {kind} {file_id} is stored")
    return FileResponse(path, media_type="application/octet-stream")


def create_app(settings: MlServiceSettings | None = None) -> FastAPI:
    """The ML service app for `settings` (default: `configs/ml-service.toml` + env)."""
    service = Service(settings or get_settings())
    app = FastAPI(
        title="authchain ML service",
        version=__version__,
        description="Watermark verification (multi_factor_v2 and v1) for authchain validators.",
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(router)
    add_metrics_route(app, service.metrics.registry)
    # uploads stream under their own limits (max_artefact_bytes, max_evidence_bytes)
    app.add_middleware(
        BodyLimit, max_bytes=service.settings.max_request_bytes, exempt_methods={"PUT"}
    )
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn authchain.ml_service.main:app` (the seed's command) builds the app on first use.
    if name == "app":
        return create_app()
    raise AttributeError(name)
