"""Identifiers and the scalar types of the protocol.

Every id is a 32-byte BLAKE3-256 digest (`Hash256`); the subclasses say *what* was hashed, so a
signature such as `get_artefact(state, aid: Aid)` reads like the protocol. In APIs and files an id
is 64 lower-case hex characters; `from_hex` also accepts upper case and a `0x` prefix.
"""

from __future__ import annotations

import re
from typing import Any, Self, TypeAlias

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from authchain.chain.errors import InvalidField

HASH_LEN = 32
_HEX64 = re.compile(r"[0-9a-f]{64}")

# Integer scalars are aliases, not NewTypes: they document the protocol in signatures without
# making every literal need a cast. Their range (u64) is checked by `Record`.
Height: TypeAlias = int
"""Block height; genesis is 0."""
Nonce: TypeAlias = int
"""Per-account transaction counter; the next valid nonce equals the account's current nonce."""
Amount: TypeAlias = int
"""Balance, fee or transfer value in the chain's smallest unit."""
TimestampMs: TypeAlias = int
"""Milliseconds since the Unix epoch."""


class Hash256(bytes):
    """A 32-byte BLAKE3-256 digest."""

    __slots__ = ()

    def __new__(cls, value: bytes | bytearray | memoryview, *, field: str = "hash") -> Self:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidField(field, f"expected {HASH_LEN} bytes, got {type(value).__name__}")
        if len(value) != HASH_LEN:
            raise InvalidField(field, f"expected {HASH_LEN} bytes, got {len(value)}")
        return super().__new__(cls, value)

    @classmethod
    def from_hex(cls, text: str, *, field: str = "hash") -> Self:
        """Parse 64 hex characters; upper case and a `0x` prefix are accepted and normalised."""
        if not isinstance(text, str):
            raise InvalidField(field, f"expected a hex string, got {type(text).__name__}")
        normal = text.strip().lower().removeprefix("0x")
        if not _HEX64.fullmatch(normal):
            raise InvalidField(field, f"expected 64 hex characters, got {text!r:.80}")
        return cls(bytes.fromhex(normal), field=field)

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"

    def short(self) -> str:
        """The first 12 hex characters, for logs."""
        return self.hex()[:12]

    # pydantic: ids appear in API schemas and config files as 64 hex characters.
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def parse(value: Any, info: core_schema.ValidationInfo) -> Hash256:
            field = info.field_name or cls.__name__
            if isinstance(value, cls):
                return value
            if isinstance(value, str):
                return cls.from_hex(value, field=field)
            raise ValueError(f"expected 64 hex characters, got {type(value).__name__}")

        return core_schema.with_info_plain_validator_function(
            parse,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.hex(), when_used="json-unless-none"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": "^(0x)?[0-9a-fA-F]{64}$",
            "description": (cls.__doc__ or "").strip(),
            "examples": ["ab" * 32],
        }


class Aid(Hash256):
    """Artefact id: BLAKE3 of the artefact (model) file bytes."""

    __slots__ = ()


class AccountId(Hash256):
    """Account id: BLAKE3 of the account's public key bytes."""

    __slots__ = ()


class EvidenceHash(Hash256):
    """BLAKE3 of the watermark evidence file bytes."""

    __slots__ = ()


class TxHash(Hash256):
    """BLAKE3 of a transaction's canonical bytes (signature included)."""

    __slots__ = ()


class BlockHash(Hash256):
    """BLAKE3 of a block header's canonical bytes."""

    __slots__ = ()


ZERO_HASH = Hash256(bytes(HASH_LEN))
"""All-zero hash: the parent of the genesis block."""
