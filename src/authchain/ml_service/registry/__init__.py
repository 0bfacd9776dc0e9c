"""Where the ML service keeps artefacts and evidence."""

from authchain.ml_service.errors import UploadError
from authchain.ml_service.registry.filesystem_store import FilesystemStore

__all__ = ["FilesystemStore", "UploadError"]
