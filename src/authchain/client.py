"""Clients for scripts and the CLI: the gateway API and the ML service's uploads.

    gw, ml = GatewayClient("http://127.0.0.1:8081"), MlServiceClient("http://127.0.0.1:8080")
    done = register_model(gw, key, profile, files=ModelFiles.in_dir(Path("out")), upload_to=ml)
    done.status                                 # committed (with proof) or rejected

or step by step: `ml.upload_artefact(path)`, `gw.register_signed(key, aid, evidence_hash,
profile, sketch=ml.sketch(aid))`, `gw.wait_for_tx(tx_hash)`.

Errors come back as `ClientError` carrying the server's `ErrorBody` (status, reason, detail).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import blake3
import httpx

from authchain.chain import crypto
from authchain.chain.schemas import (
    MAX_BATCH_BYTES,
    MAX_BATCH_TXS,
    ArtefactPublic,
    ClaimPublic,
    DisputePublic,
    StateProofPublic,
    SubmitTxBatchItem,
    SubmitTxBatchResult,
    TxStatus,
    encode_tx_hex,
    verify_tx_status_proof,
)
from authchain.chain.types import (
    AccountId,
    Aid,
    EvidenceHash,
    EvidenceRef,
    Transaction,
    TxDispute,
    TxRegisterModel,
    WmProfile,
)

Strength = dict[str, int]
"""An evidence file's `trigger_count`, `signature_bits` and `num_classes`."""


def read_strength(evidence_path: Path) -> Strength:
    """The strength an evidence file has: what its registration must state."""
    data = _read_evidence_json(evidence_path)
    try:
        return {k: int(data[k]) for k in ("trigger_count", "signature_bits", "num_classes")}
    except (ValueError, KeyError, TypeError) as exc:
        raise ClientError(
            0, "bad_evidence", f"{evidence_path}: not an evidence file ({exc})"
        ) from exc


def read_scheme(evidence_path: Path) -> str:
    """The `scheme_id` an evidence file is for: what its registration must name."""
    scheme = _read_evidence_json(evidence_path).get("scheme_id")
    if not isinstance(scheme, str):
        raise ClientError(0, "bad_evidence", f"{evidence_path}: the evidence names no scheme_id")
    return scheme


def _read_evidence_json(evidence_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(evidence_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ClientError(
            0, "bad_evidence", f"{evidence_path}: not an evidence file ({exc})"
        ) from exc
    if not isinstance(data, dict):
        raise ClientError(0, "bad_evidence", f"{evidence_path}: not an evidence file")
    return data


class ClientError(Exception):
    """An HTTP error answer, or no answer at all (status 0)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ClientError(0, "unreachable", f"{client.base_url}{path}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    if response.is_success:
        return body
    raise ClientError(
        response.status_code, str(body.get("reason", "http_error")), str(body.get("detail"))
    )


class GatewayClient:
    """The gateway's API (the node RPC answers the same read paths)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = _call(self.http, "GET", "/status")
        return result

    def account(self, account: AccountId) -> dict[str, Any]:
        result: dict[str, Any] = _call(self.http, "GET", f"/accounts/{account}")
        return result

    def submit(self, tx: Transaction) -> str:
        """Submit a (signed) tx; its hash."""
        answer = _call(self.http, "POST", "/txs", json={"tx": encode_tx_hex(tx)})
        return str(answer["tx_hash"])

    def submit_many(self, txs: Sequence[Transaction]) -> SubmitTxBatchResult:
        """Submit (signed) txs with `POST /txs/batch`, as many per request as its limits allow
        (500 txs, 4 MiB); per-tx answers, in order."""
        results: list[SubmitTxBatchItem] = []
        for batch in _batches([encode_tx_hex(tx) for tx in txs]):
            answer = SubmitTxBatchResult.model_validate(
                _call(self.http, "POST", "/txs/batch", json={"txs": batch})
            )
            results.extend(answer.results)
        return SubmitTxBatchResult(
            accepted=sum(r.status == "accepted" for r in results), results=results
        )

    def register_signed(
        self,
        key: crypto.KeyPair,
        aid: Aid,
        evidence_hash: EvidenceHash,
        profile: WmProfile,
        scheme_id: str = "multi_factor_v2",
        *,
        strength: Strength | None = None,
        spares: Sequence[EvidenceHash] = (),
        sketch: bytes = b"",
        nonce: int | None = None,
    ) -> str:
        """Build, sign and submit a TxRegisterModel for `key`'s account; the tx hash.
        `strength` is the evidence's (see `read_strength`); the defaults otherwise. `spares`:
        the spare evidence hashes the registration commits to; `sketch`: the artefact's
        function sketch (`ModelFiles.sketch`, or an ML service's `MlServiceClient.sketch`;
        V_auth refuses a registration without its own). `nonce`: the account's next one, as
        the node reads it, unless given (a sender of several at once that knows its nonces)."""
        status = self.status()
        if nonce is None:
            nonce = self.account(key.account)["next_nonce"]
        evidence = EvidenceRef(
            scheme_id, evidence_hash, profile, **(strength or {}), spares=tuple(spares),
            sketch=sketch,
        )  # fmt: skip
        tx = TxRegisterModel(key.account, aid, evidence, fee=status["min_fee"], nonce=nonce)
        return self.submit(crypto.sign_tx(tx, key, status["chain_id"]))

    def register_unsigned(self, body: dict[str, Any]) -> dict[str, Any]:
        """The seed's `POST /models/register` (devnet impersonation only)."""
        result: dict[str, Any] = _call(self.http, "POST", "/models/register", json=body)
        return result

    def tx(self, tx_hash: str) -> TxStatus:
        return TxStatus.model_validate(_call(self.http, "GET", f"/txs/{tx_hash}"))

    def wait_for_tx(self, tx_hash: str, timeout: float = 120.0) -> TxStatus:
        """Poll until the tx is committed or rejected; ClientError(408) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.tx(tx_hash)
            if status.status != "queued":
                if status.status == "committed" and not verify_tx_status_proof(status):
                    raise ClientError(0, "bad_proof", f"Merkle proof of {tx_hash} does not verify")
                return status
            if time.monotonic() > deadline:
                raise ClientError(408, "timeout", f"{tx_hash} still queued after {timeout}s")
            time.sleep(0.25)

    def model(self, aid: Aid) -> ArtefactPublic:
        """A registered model (`GET /models/{aid}`): owner, claim, spares, status."""
        return ArtefactPublic.model_validate(_call(self.http, "GET", f"/models/{aid}"))

    def claims(self, status: str | None = None, limit: int = 100) -> list[ClaimPublic]:
        """`GET /claims`: registrations as the answering validator judged them, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        body = _call(self.http, "GET", "/claims", params=params)
        return [ClaimPublic.model_validate(c) for c in body["claims"]]

    def dispute(self, tx_hash: str) -> DisputePublic:
        """A committed dispute's verdict (`GET /disputes/{tx_hash}`)."""
        return DisputePublic.model_validate(_call(self.http, "GET", f"/disputes/{tx_hash}"))

    def dispute_signed(
        self,
        key: crypto.KeyPair,
        earlier: Aid,
        suspect: Aid,
        spare_index: int,
        spare_evidence_hash: EvidenceHash,
    ) -> str:
        """Build, sign and submit a TxDispute for `key`'s account; the tx hash."""
        status = self.status()
        nonce = self.account(key.account)["next_nonce"]
        tx = TxDispute(
            key.account, earlier, suspect, spare_index, spare_evidence_hash,
            fee=status["min_fee"], nonce=nonce,
        )  # fmt: skip
        return self.submit(crypto.sign_tx(tx, key, status["chain_id"]))

    def block(self, ref: str | int = "latest") -> dict[str, Any]:
        result: dict[str, Any] = _call(self.http, "GET", f"/blocks/{ref}")
        return result

    def account_proof(self, account: AccountId) -> StateProofPublic:
        """The account's state entry with its proof; ClientError if the proof does not verify
        against the app hash it names (check that one against a header you trust)."""
        return _checked(_call(self.http, "GET", f"/accounts/{account}/proof"))

    def model_proof(self, aid: Aid) -> StateProofPublic:
        """The model's registration (or its absence) with its proof, checked likewise."""
        return _checked(_call(self.http, "GET", f"/models/{aid}/proof"))

    def close(self) -> None:
        self.http.close()


def _batches(hexes: list[str]) -> list[list[str]]:
    """`hexes` in order, cut into request bodies within `POST /txs/batch`'s limits."""
    out: list[list[str]] = [[]]
    size = 0
    for text in hexes:
        cost = len(text) + 4  # quotes, comma, space
        if out[-1] and (len(out[-1]) >= MAX_BATCH_TXS or size + cost > MAX_BATCH_BYTES - 64):
            out.append([])
            size = 0
        out[-1].append(text)
        size += cost
    return [batch for batch in out if batch]


def _checked(body: Any) -> StateProofPublic:
    proof = StateProofPublic.model_validate(body)
    if not proof.verify():
        raise ClientError(0, "bad_proof", f"state proof of {proof.key} does not verify")
    return proof


class MlServiceClient:
    """Uploads and direct verification against an ML service."""

    def __init__(self, url: str, timeout: float = 120.0, *, token: str | None = None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)

    def upload_artefact(self, path: Path) -> str:
        data = path.read_bytes()
        aid = blake3.blake3(data).hexdigest()
        _call(self.http, "PUT", f"/artefacts/{aid}", content=data)
        return aid

    def download_artefact(self, aid: Aid, path: Path) -> Path:
        """A stored artefact's bytes (public: a registration publishes them), written to
        `path` only if their BLAKE3 is `aid`."""
        response = self.http.get(f"/artefacts/{aid}/content")
        if response.status_code != 200:
            raise ClientError(response.status_code, "artefact_not_found", response.text[:300])
        if blake3.blake3(response.content).digest() != bytes(aid):
            raise ClientError(0, "hash_mismatch", f"the service sent other bytes for {aid}")
        path.write_bytes(response.content)
        return path

    def sketch(self, aid: Aid) -> bytes:
        """The stored artefact's function sketch, as its registration must declare it."""
        body = _call(self.http, "GET", f"/artefacts/{aid}/sketch")
        return bytes.fromhex(body["sketch"])

    def upload_evidence(self, path: Path) -> str:
        data = path.read_bytes()
        evidence_hash = blake3.blake3(data).hexdigest()
        _call(self.http, "PUT", f"/evidence/{evidence_hash}", content=data)
        return evidence_hash

    def verify(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = _call(self.http, "POST", "/verify", json=body)
        return result

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True)
class ModelFiles:
    """A model's artefact and evidence files, and its spares' evidence (never uploaded)."""

    artefact: Path
    evidence: Path
    spares: tuple[Path, ...] = ()

    @classmethod
    def in_dir(cls, directory: Path) -> ModelFiles:
        """The files `authchain model train` (or `Watermark.finish`) writes to `directory`:
        model.safetensors, evidence.json and spares/spare-<i>.json in index order."""
        spares = sorted(
            (directory / "spares").glob("spare-*.json"),
            key=lambda p: int(p.stem.removeprefix("spare-")),
        )
        return cls(directory / "model.safetensors", directory / "evidence.json", tuple(spares))

    @cached_property
    def aid(self) -> Aid:
        """The artefact's id: BLAKE3 of its bytes (read once: a watcher asks every poll)."""
        return Aid(blake3.blake3(self.artefact.read_bytes()).digest())

    def spare_hashes(self) -> tuple[EvidenceHash, ...]:
        """What a registration commits to: BLAKE3 of each spare evidence file."""
        return tuple(EvidenceHash(blake3.blake3(p.read_bytes()).digest()) for p in self.spares)

    def sketch(self) -> bytes:
        """What a registration declares: the artefact's function sketch, computed here (the
        artefact is loaded as validators load it, never executed as code)."""
        from authchain.ml_service.watermark.sketch import artefact_sketch  # torch: on use

        return artefact_sketch(self.artefact)


@dataclass(frozen=True)
class Registration:
    """A submitted registration: its tx, the ids it claims and, if waited for, its outcome."""

    tx_hash: str
    aid: Aid
    evidence_hash: EvidenceHash
    status: TxStatus | None


def register_model(
    gw: GatewayClient,
    key: crypto.KeyPair,
    profile: WmProfile,
    *,
    files: ModelFiles | None = None,
    ids: tuple[Aid, EvidenceHash] | None = None,
    scheme_id: str | None = None,
    upload_to: MlServiceClient | None = None,
    sketch: bytes | None = None,
    wait: bool = True,
    timeout: float = 120.0,
    on_submitted: Callable[[Registration], None] | None = None,
) -> Registration:
    """Register a model for `key`'s account: hash its `files` (uploading them to `upload_to`
    first, if given) or take their `ids`, sign and submit the registration, and, with `wait`,
    follow it until it is committed (its proof checked) or rejected.

    With `files`, the registration states the evidence's own scheme and strength, as
    validators require; with `ids` alone, `scheme_id` (default `multi_factor_v2`) and the
    default strength. Unless given, the artefact's `sketch` is asked of `upload_to` (which
    loads it as validators do, with the network's allow-list), else computed from `files`.
    `on_submitted` hears of the submitted registration before the wait."""
    strength: Strength | None = None
    spares: tuple[EvidenceHash, ...] = ()
    if files is not None:
        strength = read_strength(files.evidence)
        spares = files.spare_hashes()  # committed to; the files stay with the owner
        scheme_id = scheme_id or read_scheme(files.evidence)
        if upload_to is not None:
            aid_hex = upload_to.upload_artefact(files.artefact)
            evidence_hex = upload_to.upload_evidence(files.evidence)
        else:
            aid_hex = blake3.blake3(files.artefact.read_bytes()).hexdigest()
            evidence_hex = blake3.blake3(files.evidence.read_bytes()).hexdigest()
        ids = (Aid.from_hex(aid_hex), EvidenceHash.from_hex(evidence_hex))
    if ids is None:
        raise ValueError("give the model's files, or its ids")
    aid, evidence_hash = ids
    if sketch is None and upload_to is not None:
        sketch = upload_to.sketch(aid)
    elif sketch is None:
        sketch = files.sketch() if files is not None else b""
    tx_hash = gw.register_signed(
        key,
        aid,
        evidence_hash,
        profile,
        scheme_id or "multi_factor_v2",
        strength=strength,
        spares=spares,
        sketch=sketch,
    )
    submitted = Registration(tx_hash, aid, evidence_hash, None)
    if on_submitted is not None:
        on_submitted(submitted)
    if not wait:
        return submitted
    return dataclasses.replace(submitted, status=gw.wait_for_tx(tx_hash, timeout))


@dataclass(frozen=True)
class Dispute:
    """A filed dispute: its tx, the spare it reveals and, once committed, the verdict."""

    tx_hash: str
    earlier: Aid
    suspect: Aid
    spare_index: int
    status: TxStatus | None = None
    verdict: DisputePublic | None = None


def next_unspent_spare(model: ArtefactPublic, files: ModelFiles) -> int:
    """The first of the owner's spares that the registration commits to and no dispute has
    spent; ClientError if none is left (or the local files are not the committed ones)."""
    committed = [str(h) for h in model.spares]
    local = [str(h) for h in files.spare_hashes()]
    for index, commitment in enumerate(committed):
        if index in model.spent_spares:
            continue
        if index < len(local) and local[index] == commitment:
            return index
        raise ClientError(
            0, "spare_missing",
            f"spare {index} is committed as {commitment}, but {files.evidence.parent}/spares "
            "does not hold that file",
        )  # fmt: skip
    raise ClientError(
        0, "no_unspent_spare",
        f"the registration commits to {len(committed)} spares and all are spent",
    )  # fmt: skip


def file_dispute(
    gw: GatewayClient,
    key: crypto.KeyPair,
    files: ModelFiles,
    suspect: Aid,
    *,
    upload_to: MlServiceClient,
    spare_index: int | None = None,
    wait: bool = True,
    timeout: float = 180.0,
    on_submitted: Callable[[Dispute], None] | None = None,
) -> Dispute:
    """Dispute `suspect` as a copy of the owner's model in `files`: reveal the spare
    `spare_index` (default: the next unspent one) to the validators (upload its evidence to
    `upload_to`, a validator's ML service), sign and submit the TxDispute and, with `wait`,
    follow it to its verdict."""
    earlier = files.aid
    index = spare_index if spare_index is not None else next_unspent_spare(gw.model(earlier), files)
    spare_hash = EvidenceHash.from_hex(upload_to.upload_evidence(files.spares[index]))
    tx_hash = gw.dispute_signed(key, earlier, suspect, index, spare_hash)
    filed = Dispute(tx_hash, earlier, suspect, index)
    if on_submitted is not None:
        on_submitted(filed)
    if not wait:
        return filed
    status = gw.wait_for_tx(tx_hash, timeout)
    verdict = gw.dispute(tx_hash) if status.status == "committed" else None
    return dataclasses.replace(filed, status=status, verdict=verdict)
