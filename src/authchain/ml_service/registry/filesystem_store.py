"""`FilesystemStore` (seed `registry/filesystem_store.py`): content-addressed files on disk.

    <model_root>/<aid>.safetensors | <aid>.pt
    <evidence_root>/<evidence_hash>.json

Ids are validated as 64 lower-case hex characters before they reach a path, so a name can never
leave its root. Uploads stream to a temporary file in the same directory while being hashed;
only if BLAKE3 of the bytes equals the id is the file renamed into place (atomic on POSIX), so
a reader never sees a partial or mismatched file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from authchain.ml_service.artefact import FORMATS, sniff_format
from authchain.ml_service.errors import UploadError

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoreResult:
    path: Path
    format: str
    size_bytes: int
    created: bool


def _check_id(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise ValueError(f"not a 64-hex id: {value!r:.80}")
    return value


class FilesystemStore:
    """Artefacts and evidence by hash."""

    def __init__(
        self, model_root: Path, evidence_root: Path, *, max_store_bytes: int | None = None
    ) -> None:
        self.model_root = model_root
        self.evidence_root = evidence_root
        self.max_store_bytes = max_store_bytes
        """What all stored files may take together; an upload past it is `store_full`."""
        model_root.mkdir(parents=True, exist_ok=True)
        evidence_root.mkdir(parents=True, exist_ok=True)
        self.used_bytes = sum(
            p.stat().st_size for root in (model_root, evidence_root) for p in root.iterdir()
            if p.is_file() and not p.name.startswith(".upload-")
        )  # fmt: skip

    def find_artefact(self, aid: str) -> Path | None:
        """The stored artefact for `aid` (safetensors preferred), or None."""
        _check_id(aid)
        for fmt in FORMATS:
            path = self.model_root / f"{aid}.{fmt}"
            if path.is_file():
                return path
        return None

    def find_evidence(self, evidence_hash: str) -> Path | None:
        """The stored evidence file, or None."""
        path = self.evidence_root / f"{_check_id(evidence_hash)}.json"
        return path if path.is_file() else None

    async def put_artefact(
        self, aid: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> StoreResult:
        """Store an artefact upload if its BLAKE3 is `aid`; its format is sniffed."""
        return await self._put(self.model_root, _check_id(aid), None, chunks, max_bytes, "aid")

    async def put_evidence(
        self, evidence_hash: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> StoreResult:
        """Store an evidence upload if its BLAKE3 is `evidence_hash`."""
        return await self._put(
            self.evidence_root, _check_id(evidence_hash), "json", chunks, max_bytes, "evidence_hash"
        )

    async def _put(
        self,
        root: Path,
        file_id: str,
        fmt: str | None,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
        field: str,
    ) -> StoreResult:
        hasher = blake3.blake3()
        size = 0
        head = b""
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=".upload-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadError(
                            413, "body_too_large", f"upload is larger than {max_bytes} bytes"
                        )
                    if self.max_store_bytes is not None and (
                        self.used_bytes + size > self.max_store_bytes
                    ):
                        raise UploadError(
                            507, "store_full",
                            f"the store holds {self.used_bytes} of its {self.max_store_bytes} "
                            "bytes (max_store_bytes); this upload does not fit",
                        )  # fmt: skip
                    if len(head) < 16:
                        head += chunk[: 16 - len(head)]
                    hasher.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if size == 0:
                raise UploadError(400, "empty_upload", "the upload is empty")
            digest = hasher.hexdigest()
            if digest != file_id:
                raise UploadError(
                    400,
                    "hash_mismatch",
                    f"{field}: BLAKE3 of the uploaded bytes is {digest}, not {file_id}",
                )
            fmt = fmt or sniff_format(head)
            path = root / f"{file_id}.{fmt}"
            created = not path.exists()
            if created:
                tmp.replace(path)
                self.used_bytes += size
            return StoreResult(path, fmt, size, created)
        finally:
            tmp.unlink(missing_ok=True)
