"""`MlServiceSettings` (seed `config.py`): `configs/ml-service.toml` + `ML_SERVICE_*` env.

The seed's `ML_SERVICE_MODEL_ROOT` still sets where artefacts live.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from authchain.ml_service.models.timm_arch import DEFAULT_TIMM_MODELS, MODEL_NAME
from authchain.settings import ListenAddr, TomlSettings, load_settings

DEFAULT_CONFIG = Path("configs/ml-service.toml")


class PeerValidator(BaseModel):
    """A validator whose ML service may fetch evidence from this one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["ed25519", "ml-dsa-65"] = "ed25519"
    public_key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$|^[0-9a-f]{3904}$")]
    """Hex: 32 bytes for Ed25519, 1,952 for ML-DSA-65."""


class PeerAuthSettings(BaseModel):
    """Who may read evidence (`GET /evidence/{hash}/content`), and how this service signs its
    own fetches from peers (`peer_auth.py`). A testnet writes it for every validator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain_id: str | None = Field(None, min_length=1, max_length=128)
    """The network the signatures are bound to."""
    validators: list[PeerValidator] = Field(default_factory=list, max_length=1024)
    """The validator set (a testnet: CometBFT's genesis validators). Empty: evidence is
    served to nobody."""
    key_file: Path | None = None
    """This validator's key, to sign its fetches from peers: an authchain key file or
    CometBFT's `priv_validator_key.json`."""
    max_clock_skew_secs: int = Field(60, ge=1, le=3600)

    @model_validator(mode="after")
    def _bound_to_a_chain(self) -> PeerAuthSettings:
        if (self.validators or self.key_file) and self.chain_id is None:
            raise ValueError("peer_auth.chain_id is needed with validators or key_file")
        return self


class MlServiceSettings(TomlSettings):
    """Everything the ML service reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="ML_SERVICE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    listen_addr: ListenAddr = "127.0.0.1:8080"
    model_root: Path = Path("data/models")
    """Artefacts: <model_root>/<aid>.safetensors or .pt (env ML_SERVICE_MODEL_ROOT)."""
    evidence_root: Path = Path("data/evidence")
    """Evidence files: <evidence_root>/<evidence_hash>.json."""
    max_artefact_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_evidence_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    """Where verification runs; `auto` picks CUDA when torch sees a GPU."""
    precision: Literal["fast", "float64"] = "fast"
    """`fast`: one fp32 pass, float64 for rows fp32 cannot decide (same verdicts as float64,
    at about fp32 cost); `float64`: every pass in float64."""
    torch_threads: int = Field(0, ge=0, le=256)
    """CPU threads for torch; 0 keeps torch's default."""
    upload_token: str | None = Field(None, min_length=16)
    """When set, uploads (`PUT /artefacts`, `PUT /evidence`) need `Authorization: Bearer
    <token>`. Required when the service listens beyond loopback."""
    max_store_bytes: int = Field(64 * 1024**3, ge=1024)
    """What all stored artefacts and evidence may take together (507 `store_full` above it)."""
    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Largest non-upload request body (`/verify` names up to 100,000 registrations)."""
    peers: list[str] = Field(default_factory=list, max_length=64)
    """Peer ML services (other validators') to fetch missing files from, by hash."""
    peer_auth: PeerAuthSettings = PeerAuthSettings()
    """Evidence is served only to requests signed by a validator key."""
    timm_models: list[Annotated[str, Field(pattern=MODEL_NAME.pattern)]] = Field(
        default_factory=lambda: list(DEFAULT_TIMM_MODELS), max_length=1024
    )
    """The timm models this network accepts (`authchain.arch = "timm"` artefacts); every
    validator must run the same list. The built-in architectures are always accepted."""
    model_cache_size: int = Field(8, ge=0)
    stats_cache_size: int = Field(4096, ge=0)


def load_ml_settings(path: Path | None = None, **overrides: Any) -> MlServiceSettings:
    """Settings from `path`, the environment and `overrides` (CLI options, validated like the
    rest); ConfigError naming a bad key."""
    return load_settings(MlServiceSettings, path, **overrides)


@lru_cache(maxsize=1)
def get_settings() -> MlServiceSettings:
    """The settings of `uvicorn authchain.ml_service.main:app` (file if present, then env)."""
    return load_ml_settings(DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
