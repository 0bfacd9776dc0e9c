"""Errors of the ML service: each carries a stable `.reason` code and a human `.detail`.

    MlServiceError
     ├── ArchitectureError   (models/registry.py)  unknown architecture or bad config
     ├── ArtefactError       (artefact.py)         a file that cannot become a model
     ├── EvidenceError       (watermark/evidence.py)  evidence that does not parse
     ├── EvidenceMismatch    (watermark/verify.py)  evidence for a different kind of model
     └── UploadError         (registry/)            a refused upload; also has `.status`

The verifier turns any of them into `ok=false` with the reason; the HTTP layer turns an
UploadError into its 4xx.
"""

from __future__ import annotations


class MlServiceError(Exception):
    """Base: a refusal with a stable reason code; shown as `reason: detail`, as the chain's
    `Rejected` is."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ArchitectureError(MlServiceError):
    """An unknown architecture name or a config that does not fit it."""


class ArtefactError(MlServiceError):
    """An artefact that cannot be turned into a model."""


class EvidenceError(MlServiceError):
    """Evidence bytes that are not valid evidence."""


class EvidenceMismatch(MlServiceError):
    """Evidence that describes a different kind of model than the artefact."""


class UploadError(MlServiceError):
    """An upload refused with HTTP `status` (400 or 413)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.status = status
