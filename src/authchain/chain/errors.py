"""Errors raised by the chain package.

    ChainError
     ├── InvalidField       a value breaks a type's rule; `.field` names it (also a ValueError)
     ├── Rejected           a refusal with a stable `.reason` code and a human `.detail`:
     │    ├── InvalidTx       (state.py)  a tx breaks a state rule
     │    ├── PoolRejected    (consensus/pool.py)  the pool refused a tx
     │    └── InvalidBlock    (validation/base.py)  a block breaks a validity rule
     ├── DecodeError        bytes are not the canonical encoding of the expected type
     ├── SignatureError     a signature is missing, malformed, or does not verify
     └── StorageError       the store failed, or a record is corrupt; `.key` names the record

`ConfigError` (a config file or environment override is wrong) lives in `authchain.settings`,
shared with the gateway and ML service, and is re-exported here.

Errors from libraries (msgspec, RocksDB, cryptography, pydantic) are converted into these at the
boundary with `raise ... from exc`, so callers handle one hierarchy.
"""

from __future__ import annotations

from authchain.settings import ConfigError

__all__ = [
    "ChainError",
    "ConfigError",
    "DecodeError",
    "InvalidField",
    "Rejected",
    "SignatureError",
    "StorageError",
]


class ChainError(Exception):
    """Base class of every error the chain package raises on purpose."""


class InvalidField(ChainError, ValueError):
    """A field's value breaks the rule of its type."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Rejected(ChainError):
    """A refusal with a stable reason code (a StrEnum member), a human detail and, where one
    field is to blame, its name (`evidence.wm_profile.tau_input`)."""

    def __init__(self, reason: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


class DecodeError(ChainError):
    """Bytes that are not the canonical encoding of the expected type."""


class SignatureError(ChainError):
    """A signature that is missing, malformed, or does not verify."""


class StorageError(ChainError):
    """The store failed, or a stored record is corrupt."""

    def __init__(self, message: str, *, key: bytes | None = None) -> None:
        where = f" (key {key.hex()})" if key is not None else ""
        super().__init__(f"{message}{where}")
        self.key = key
