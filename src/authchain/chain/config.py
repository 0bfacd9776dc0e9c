"""`ChainConfig` (seed `config.rs`): TOML file + `AUTHCHAIN_*` environment overrides.

    chain_id = "authchain-devnet"
    [consensus] block_time_secs, max_block_txs, max_block_size_bytes, allow_empty_blocks,
                max_artefacts_per_block, max_pool_txs, max_pool_txs_per_sender,
                max_nonce_gap, pool_ttl_blocks, files_wait_blocks
    [storage]   path, create_if_missing
    [ml_client] base_url, fallback_urls, timeout_secs, max_concurrency
    [metrics]   enabled, listen_addr
    [rpc]       listen_addr
    [node]      key_file
    [abci]      listen_addr, transport, unavailable_wait_secs, include_unverified_claims,
                mempool_size, mempool_max_txs_bytes, mempool, txs_listen_addr,
                mempool_peers (CometBFT mode)
    [genesis]   timestamp_ms, min_fee, impersonation, [genesis.security] (the watermark floors),
                [[genesis.validators]], [[genesis.accounts]]

Environment variables override the file: `AUTHCHAIN_CHAIN_ID`, and nested keys joined with
`__`, e.g. `AUTHCHAIN_CONSENSUS__BLOCK_TIME_SECS=1`. An unknown key or a wrong type fails at
start-up with a `ConfigError` naming the key and where it came from (file or variable).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from authchain.chain import codec
from authchain.chain.types import AccountId, SigScheme
from authchain.settings import (
    ENV_NESTED,
    HttpUrl,
    ListenAddr,
    TomlSettings,
    load_settings,
)
from authchain.wire import FloorsJson

ENV_PREFIX = "AUTHCHAIN_"
TEST_CHAIN = re.compile(r"(^|-)(test|testnet|devnet)$")
"""Chain ids of devnets and test chains: `...-devnet`, `...-testnet`, `...-test`. Only they may
run with `genesis.min_fee = 0` or misbehaviour switches."""


def is_test_chain(chain_id: str) -> bool:
    """Whether `chain_id` names a devnet or test chain."""
    return TEST_CHAIN.search(chain_id) is not None


DEFAULT_CONFIG = Path("configs/devnet.toml")


def _parse_hex_bytes(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value.strip().lower().removeprefix("0x"))
        except ValueError:
            raise ValueError("expected hex characters") from None
    return value


HexBytes = Annotated[
    bytes, BeforeValidator(_parse_hex_bytes), PlainSerializer(lambda v: v.hex(), return_type=str)
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsensusConfig(_Section):
    """Block production and validity limits."""

    block_time_secs: float = Field(5.0, gt=0)
    max_block_txs: int = Field(1000, ge=1)
    max_block_size_bytes: int = Field(1_048_576, ge=1024)
    allow_empty_blocks: bool = True
    max_artefacts_per_block: int = Field(16, ge=1)
    max_pool_txs: int = Field(10_000, ge=1)
    max_pool_txs_per_sender: int = Field(64, ge=1)
    """Pending txs one account may have (pool policy)."""
    max_nonce_gap: int = Field(16, ge=0)
    """How far above an account's next nonce a pending tx's nonce may be (pool policy)."""
    pool_ttl_blocks: int = Field(600, ge=1)
    """A tx pending this many blocks expires (pool policy)."""
    rejections_kept_blocks: int = Field(100_000, ge=1)
    """How long why-a-tx-was-dropped records are kept (answers to GET /txs/{hash})."""
    max_rejections: int = Field(100_000, ge=1)
    """At most this many such records are kept (the newest)."""
    proposal_verify_secs: float = Field(10.0, gt=0)
    """How long a proposer waits for V_auth's verdicts; a claim without one by then waits
    for a later block, each miss doubling the wait (up to 64 blocks)."""
    files_wait_blocks: int = Field(300, ge=1)
    """A registration whose artefact or evidence file is not uploaded yet waits in the pool for
    this many blocks, then is dropped with reason `files_unavailable` (pool policy, not a
    validity rule)."""

    def validity_rules(self) -> tuple[int, int, bool, int]:
        """The limits every validator must agree on (committed to by the genesis hash)."""
        return (
            self.max_block_txs,
            self.max_block_size_bytes,
            self.allow_empty_blocks,
            self.max_artefacts_per_block,
        )


class StorageConfig(_Section):
    """Where the RocksDB database lives."""

    path: Path = Path("data/chain-db")
    create_if_missing: bool = True


class MlClientConfig(_Section):
    """How validators reach the ML service that runs `V_auth`."""

    base_url: str = "http://127.0.0.1:8080"
    fallback_urls: list[str] = Field(default_factory=list)
    timeout_secs: float = Field(30.0, gt=0)
    max_concurrency: int = Field(4, ge=1)

    @field_validator("base_url", "fallback_urls")
    @classmethod
    def _http_urls(cls, value: str | list[str]) -> str | list[str]:
        for url in [value] if isinstance(value, str) else value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"expected an http(s) URL, got {url!r}")
        return value


class MetricsConfig(_Section):
    """Prometheus `/metrics` exporter."""

    enabled: bool = True
    listen_addr: ListenAddr = "127.0.0.1:9898"


class RpcConfig(_Section):
    """The node's RPC server (used by the gateway)."""

    listen_addr: ListenAddr = "127.0.0.1:26657"


GRPC_MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""The largest answer CometBFT's gRPC ABCI client reads (grpc-go's default; v0.38 sets none)."""


class AbciConfig(_Section):
    """The ABCI server CometBFT drives (`authchain abci`, multi-validator networks)."""

    listen_addr: str = "tcp://127.0.0.1:26658"
    """CometBFT's `proxy_app`: tcp://HOST:PORT or unix:///PATH."""
    transport: Literal["socket", "grpc"] = "socket"
    """CometBFT's `abci` setting. "socket" (the default, and the faster: CometBFT pipelines
    CheckTx and its recheck on one connection); "grpc" makes one round trip per request and
    reads answers of at most 4 MiB, so it needs consensus.max_block_size_bytes <= 4 MiB
    (README, "ABCI transports", has the measurements)."""
    unavailable_wait_secs: float = Field(20.0, ge=0)
    """ProcessProposal waits this long for an unavailable V_auth, then votes REJECT for that
    round only (nothing is recorded invalid)."""
    include_unverified_claims: bool = False
    """Byzantine test switch: propose and accept registrations without V_auth. Refused unless
    the chain id ends in -test, -testnet or -devnet."""
    mempool_size: int = Field(5_000, ge=1)
    """CometBFT's `[mempool] size` (`authchain testnet` writes both to match). CheckTx refuses a
    new tx (`mempool_full`) that would not fit beside the txs the app admitted, because
    CometBFT checks again after CheckTx answers and would drop it without telling its sender."""
    mempool_max_txs_bytes: int = Field(64 * 1024 * 1024, ge=1)
    """CometBFT's `[mempool] max_txs_bytes`, likewise."""
    mempool: Literal["cometbft", "app"] = "cometbft"
    """Who holds the pending txs. "cometbft": CometBFT's mempool (clients call its
    `broadcast_tx_*`; CheckTx admits, and rechecks after each commit). "app": CometBFT runs
    with `[mempool] type = "nop"` and the app's own pool holds them, durable as the embedded
    node's: clients post to `txs_listen_addr`, each tx admitted there is relayed to
    `mempool_peers`, and PrepareProposal proposes from the pool (README, "Where pending txs
    live")."""
    txs_listen_addr: ListenAddr = "127.0.0.1:26659"
    """With mempool = "app": where the app takes txs (`POST /txs`, `POST /txs/batch`, as an
    embedded node's RPC)."""
    mempool_peers: list[HttpUrl] = Field(default_factory=list, max_length=256)
    """With mempool = "app": the other validators' `txs_listen_addr` URLs, to which each tx
    this node admits from a client is relayed."""

    @field_validator("listen_addr")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not value.startswith(("tcp://", "unix://")):
            raise ValueError(f"expected tcp://HOST:PORT or unix:///PATH, got {value!r}")
        return value


class NodeConfig(_Section):
    """This node's identity."""

    key_file: Path | None = None
    """Validator key file; a node without one follows but does not propose."""


class ValidatorConfig(_Section):
    """A member of the proof-of-authority validator set."""

    scheme: SigScheme = SigScheme.ML_DSA_65
    public_key: HexBytes

    @property
    def account(self) -> AccountId:
        """The validator's account id, BLAKE3 of its public key."""
        return codec.compute_account_id(self.public_key)

    @field_validator("scheme")
    @classmethod
    def _signing_scheme(cls, value: SigScheme) -> SigScheme:
        if value is SigScheme.UNSIGNED:
            raise ValueError("a validator must have a signing scheme")
        return value


class GenesisAccount(_Section):
    """An account funded at genesis."""

    account: AccountId
    balance: int = Field(ge=0, lt=2**64)


class GenesisConfig(_Section):
    """The chain's starting point."""

    timestamp_ms: int = Field(0, ge=0)
    min_fee: int = Field(0, ge=0, lt=2**64)
    impersonation: bool = False
    """Devnet only: accept unsigned transactions for any named account (like Anvil)."""
    security: FloorsJson = FloorsJson()
    """The watermark floors every registration is held to (docs/SECURITY.md argues the
    defaults: an attacker who tries 2^40 key seeds against a model he holds passes both
    factors with chance at most 2^40 · 2^-64 · 2^-32 = 2^-56)."""
    validators: list[ValidatorConfig] = Field(default_factory=list)
    accounts: list[GenesisAccount] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> GenesisConfig:
        accounts = [a.account for a in self.accounts]
        if len(set(accounts)) != len(accounts):
            raise ValueError("an account is listed twice in genesis.accounts")
        validators = [v.account for v in self.validators]
        if len(set(validators)) != len(validators):
            raise ValueError("a validator is listed twice in genesis.validators")
        return self


class ChainConfig(TomlSettings):
    """Everything a node needs to know at start-up."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED,
        extra="forbid",
        frozen=True,
    )

    chain_id: str = Field("authchain-devnet", min_length=1, max_length=64)
    consensus: ConsensusConfig = ConsensusConfig()
    storage: StorageConfig = StorageConfig()
    ml_client: MlClientConfig = MlClientConfig()
    metrics: MetricsConfig = MetricsConfig()
    rpc: RpcConfig = RpcConfig()
    node: NodeConfig = NodeConfig()
    abci: AbciConfig = AbciConfig()
    genesis: GenesisConfig = GenesisConfig()

    @model_validator(mode="after")
    def _fees_outside_devnets(self) -> ChainConfig:
        if self.genesis.min_fee == 0 and not is_test_chain(self.chain_id):
            raise ValueError(
                f"genesis.min_fee must be above 0 on {self.chain_id!r}: on a chain without fees "
                "anyone can fill every validator's pool for free (only chain ids ending in "
                "-devnet, -testnet or -test may run with min_fee = 0)"
            )
        if (
            self.abci.transport == "grpc"
            and self.consensus.max_block_size_bytes > GRPC_MAX_ANSWER_BYTES
        ):
            raise ValueError(
                f"consensus.max_block_size_bytes = {self.consensus.max_block_size_bytes} is "
                f"above {GRPC_MAX_ANSWER_BYTES} with abci.transport = 'grpc': CometBFT's gRPC "
                "client reads answers of at most 4 MiB, and PrepareProposal's answer carries "
                "the block's txs"
            )
        if self.abci.include_unverified_claims and not is_test_chain(self.chain_id):
            raise ValueError(
                "abci.include_unverified_claims: misbehaviour switches run only on test chains "
                f"(chain id ending in -test, -testnet or -devnet), not on {self.chain_id!r}"
            )
        return self


def load_chain_config(path: Path | None = None, **overrides: Any) -> ChainConfig:
    """Load `path` (TOML), apply `AUTHCHAIN_*` env overrides, validate; or raise ConfigError.

    With no path, defaults and the environment alone. Relative `storage.path` and
    `node.key_file` are resolved against the working directory, as the CLI documents.
    """
    return load_settings(ChainConfig, path, **overrides)
