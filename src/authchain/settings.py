"""Loading settings from a TOML file plus environment overrides (pydantic-settings).

`TomlSettings` is the base of `ChainConfig`, the gateway's `ApiSettings` and the ML service's
`MlServiceSettings`. Precedence: keyword arguments, then environment variables (each class's
`env_prefix`, nested keys joined with `__`), then the TOML file, then defaults. An unknown key
or a bad value raises `ConfigError` naming the key and where it came from.

This module imports nothing from `chain`, `gateway` or `ml_service`; all three use it.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
)

ENV_NESTED = "__"
_FILE_DATA: ContextVar[dict[str, Any] | None] = ContextVar("authchain_settings_file", default=None)

S = TypeVar("S", bound="TomlSettings")


class ConfigError(Exception):
    """A configuration file or environment override is invalid; the message names key and source."""


def check_listen_addr(value: str) -> str:
    """`host:port` with a port in 0..65535 (0 lets the OS choose)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


ListenAddr = Annotated[str, BeforeValidator(check_listen_addr)]


def check_http_url(value: str) -> str:
    """An http(s) URL, without a trailing slash (paths are appended to it)."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(check_http_url)]


class TomlSettings(BaseSettings):
    """Settings whose file layer is the TOML `load_settings` read."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_source = InitSettingsSource(settings_cls, init_kwargs=_FILE_DATA.get() or {})
        return (init_settings, env_settings, file_source)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; raise `ConfigError` naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def format_validation_error(exc: ValidationError, source: str, env_prefix: str) -> str:
    """One line per problem: `source: key: message`, naming the env var when it was one."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        env_name = env_prefix + ENV_NESTED.join(str(p) for p in err["loc"]).upper()
        where = f"environment variable {env_name}" if env_name in os.environ else source
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}: {key}: {message}")
    return "\n".join(lines)


def load_settings(cls: type[S], path: Path | None = None, **overrides: Any) -> S:
    """`cls` from `path` (TOML) + environment + `overrides`, validated; or ConfigError."""
    data = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    token = _FILE_DATA.set(data)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        raise ConfigError(format_validation_error(exc, source, prefix)) from exc
    finally:
        _FILE_DATA.reset(token)
