"""`Record`: the base of every protocol container.

A Record is a frozen msgspec Struct encoded as a msgpack array in field order (`array_like`),
which is what makes its bytes canonical (see `authchain.chain.codec`). Construction and decoding
both run `__post_init__`, which checks each field against its declared type:

- a `Hash256` subclass must be 32 bytes (plain bytes are converted to the declared subclass);
- an `int` must be an unsigned 64-bit integer (`bool` is refused);
- a `float` must be finite (an `int` is converted);
- a `StrEnum` is converted from its string value.

A failing check raises `InvalidField` naming the field. Containers hold fields only; behaviour
lives in free functions elsewhere.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from authchain.chain.errors import InvalidField
from authchain.chain.types.ids import HASH_LEN, Hash256

U64_MAX = 2**64 - 1

_Check = Callable[[str, Any], Any]


def _check_hash(kind: type[Hash256]) -> _Check:
    def check(name: str, value: Any) -> Any:
        if type(value) is kind and len(value) == HASH_LEN:
            return value
        return kind(value, field=name)

    return check


def _check_u64(name: str, value: Any) -> Any:
    if type(value) is not int:
        raise InvalidField(name, f"expected an integer, got {type(value).__name__}")
    if not 0 <= value <= U64_MAX:
        raise InvalidField(name, f"must be in [0, 2**64-1], got {value}")
    return value


def _check_float(name: str, value: Any) -> Any:
    if type(value) is int:
        value = float(value)
    if type(value) is not float:
        raise InvalidField(name, f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidField(name, f"must be finite, got {value}")
    return value


def _check_str(name: str, value: Any) -> Any:
    if type(value) is not str:
        raise InvalidField(name, f"expected a string, got {type(value).__name__}")
    return value


def _check_bytes(name: str, value: Any) -> Any:
    if type(value) is not bytes:
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise InvalidField(name, f"expected bytes, got {type(value).__name__}")
    return value


def _check_enum(kind: type[enum.Enum]) -> _Check:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in kind)
            raise InvalidField(name, f"must be one of {allowed}, got {value!r}") from None

    return check


def _checker_for(annotation: Any) -> _Check | None:
    base = annotation
    if isinstance(base, type):
        if issubclass(base, Hash256):
            return _check_hash(base)
        if issubclass(base, enum.Enum):
            return _check_enum(base)
        if base is bool:
            return None
        if base is int:
            return _check_u64
        if base is float:
            return _check_float
        if base is str:
            return _check_str
        if base is bytes:
            return _check_bytes
    return None  # nested Records, tuples and unions check themselves or are checked by msgspec


class Record(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """Base of every protocol container: frozen, array-encoded, field-checked."""

    _checks: ClassVar[dict[type, list[tuple[str, _Check]]]] = {}

    def __post_init__(self) -> None:
        cls = type(self)
        checks = Record._checks.get(cls)
        if checks is None:
            checks = []
            for f in msgspec.structs.fields(cls):
                check = _checker_for(f.type)
                if check is not None:
                    checks.append((f.name, check))
            Record._checks[cls] = checks
        for name, check in checks:
            value = getattr(self, name)
            fixed = check(name, value)
            if fixed is not value:
                msgspec.structs.force_setattr(self, name, fixed)
        self.validate()

    def validate(self) -> None:
        """Rules that involve more than one field; raise `InvalidField`."""
