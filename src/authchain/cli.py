"""The `authchain` command.

    authchain keys new [--scheme ml-dsa-65|ed25519] [--out PATH]   create an account key file
    authchain keys show PATH                                        print a key file's account
    authchain node [--config configs/devnet.toml]                   run a chain node
    authchain abci [--config C] [--listen tcp://127.0.0.1:26658]     serve CometBFT (ABCI 2.0)
    authchain testnet [--validators 4] [--dir DIR]                  a CometBFT testnet
    authchain ml-service [--config configs/ml-service.toml]         run the ML verifier
    authchain model train|evidence|verify                           watermarked models
    authchain gateway [--config configs/api.toml]                   run the public API
    authchain register --key K --model DIR [--upload ML_URL]        register a model (signed)
    authchain status | devnet | demo                                use a local devnet

The ML commands import torch lazily, so the chain commands run without it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from authchain import __version__
from authchain.chain.config import DEFAULT_CONFIG, load_chain_config
from authchain.chain.crypto import DEFAULT_SCHEME, KeyPair, read_key_file, write_key_file
from authchain.chain.errors import ChainError, ConfigError, StorageError
from authchain.chain.types import AccountId, SigScheme
from authchain.floors import Floors

app = typer.Typer(
    name="authchain",
    help="ML-aware consensus: a chain that only accepts models that carry their owner's watermark.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create and inspect account keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

err = Console(stderr=True)
out = Console()


def _version(value: bool) -> None:
    if value:
        out.print(f"authchain {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """authchain: ML-aware consensus."""


_SIGNING_SCHEMES = [s.value for s in SigScheme if s is not SigScheme.UNSIGNED]


@keys_app.command("new")
def keys_new(
    scheme: str = typer.Option(
        DEFAULT_SCHEME.value,
        "--scheme",
        help=f"Signature scheme: {' | '.join(_SIGNING_SCHEMES)}.",
    ),
    out_path: Path = typer.Option(
        Path("authchain.key"), "--out", "-o", help="Where to write the key file (mode 0600)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key file."),
) -> None:
    """Create a new account key and print its account id."""
    if scheme not in _SIGNING_SCHEMES:
        err.print(f"[red]error:[/] --scheme must be one of {', '.join(_SIGNING_SCHEMES)}")
        raise typer.Exit(2)
    key = KeyPair.generate(SigScheme(scheme))
    try:
        write_key_file(out_path, key, overwrite=force)
    except FileExistsError as exc:
        err.print(f"[red]error:[/] {exc} (use --force to replace it)")
        raise typer.Exit(1) from None
    err.print(f"wrote {scheme} key to {out_path} (mode 0600)")
    out.print(key.account.hex())


@keys_app.command("show")
def keys_show(path: Path = typer.Argument(..., help="Key file to read.")) -> None:
    """Print the scheme and account id of a key file (never the private key)."""
    try:
        key = read_key_file(path)
    except ChainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    out.print(f"scheme:  {key.scheme.value}")
    out.print(f"account: {key.account.hex()}")


LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """Timestamped log lines on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise


def _check_log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_LEVELS)}")
    return value.lower()


@app.command("node")
def node(
    config: Path = typer.Option(
        DEFAULT_CONFIG, "--config", "-c", help="Chain config (TOML); AUTHCHAIN_* env overrides."
    ),
    log_level: str = typer.Option(
        "info", "--log-level", callback=_check_log_level, help="debug | info | warning | error"
    ),
) -> None:
    """Run a chain node: RocksDB store, block producer, RPC server and /metrics.

    Paths in the config (storage.path, node.key_file) are relative to the working directory.
    Stop it with Ctrl-C or SIGTERM; a killed node restarts from its stored tip.
    """
    from authchain.chain.node import run_node

    setup_logging(log_level)
    try:
        asyncio.run(run_node(load_chain_config(config)))
    except (ConfigError, StorageError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command("abci")
def abci(
    config: Path = typer.Option(
        DEFAULT_CONFIG, "--config", "-c", help="Chain config (TOML); AUTHCHAIN_* env overrides."
    ),
    listen: str | None = typer.Option(
        None, "--listen", help="tcp://HOST:PORT or unix:///PATH (default: abci.listen_addr)."
    ),
    log_level: str = typer.Option(
        "info", "--log-level", callback=_check_log_level, help="debug | info | warning | error"
    ),
) -> None:
    """Serve the authchain application to a CometBFT node over ABCI 2.0 (multi-validator).

    Start it before `cometbft start --proxy_app tcp://127.0.0.1:26658`. It keeps its own
    RocksDB at storage.path and verifies with its own ML service (ml_client.base_url).
    `authchain testnet` starts both for every validator.
    """
    from authchain.chain.abci.run import run_abci

    setup_logging(log_level)
    try:
        overrides = {"abci": {"listen_addr": listen}} if listen else {}
        asyncio.run(run_abci(load_chain_config(config, **overrides)))
    except (ConfigError, StorageError, OSError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


# --- the ML side: `authchain model ...` and `authchain ml-service` (torch loads only here) ---

model_app = typer.Typer(
    help="Train watermarked models, make evidence, verify locally.", no_args_is_help=True
)
app.add_typer(model_app, name="model")


def _owner_bytes(key_file: Path | None, owner: str | None) -> bytes:
    if (key_file is None) == (owner is None):
        err.print("[red]error:[/] give exactly one of --key (a key file) or --owner (account hex)")
        raise typer.Exit(2)
    if key_file is not None:
        try:
            return bytes(read_key_file(key_file).account)
        except ChainError as exc:
            err.print(f"[red]error:[/] --key: {exc}")
            raise typer.Exit(1) from None
    try:
        return bytes(AccountId.from_hex(owner or "", field="--owner"))
    except ChainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


_KEY_OPT = typer.Option(None, "--key", "-k", help="Owner's key file (its account owns the model).")
_CHAIN_CONFIG_OPT = typer.Option(
    DEFAULT_CONFIG,
    "--chain-config",
    help="Chain config whose [genesis.security] floors apply (defaults when the file is absent).",
)


def _floors(path: Path) -> Floors:
    """The floors of the chain `path` configures (the defaults if there is no such file)."""
    try:
        return load_chain_config(path if path.exists() else None).genesis.security.to_floors()
    except ConfigError as exc:
        err.print(f"[red]error:[/] --chain-config: {exc}")
        raise typer.Exit(2) from None


_OWNER_OPT = typer.Option(None, "--owner", help="Owner account id (64 hex), instead of --key.")


_TRIGGERS_OPT = typer.Option(100, "--triggers", min=1, max=4096, help="Trigger inputs (K).")
_BITS_OPT = typer.Option(
    2048, "--bits", min=1, max=4096, help="Signature bits (n), spread over the conv layers."
)


@model_app.command("train")
def model_train(
    out: Path = typer.Option(Path("data/train/model"), "--out", "-o", help="Output directory."),
    key_file: Path | None = _KEY_OPT,
    owner: str | None = _OWNER_OPT,
    tiny: bool = typer.Option(False, "--tiny", help="A tiny SmallResNet (seconds, for tests)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Default 6 (5 with --from)."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    watermark: bool = typer.Option(
        True, "--watermark/--no-watermark", help="Embed the watermark (default) or not."
    ),
    base: Path | None = typer.Option(
        None, "--from", help="Fine-tune this existing artefact instead of training from scratch."
    ),
    triggers: int = _TRIGGERS_OPT,
    bits: int = _BITS_OPT,
    probes: int = typer.Option(32, "--probes", min=1, help="Logit probe inputs (P)."),
    arch: str = typer.Option(
        "small_resnet",
        "--arch",
        help="small_resnet, or any timm model name (resnet18, efficientnet_b0, test_vit, ...): "
        "randomly initialised, never downloaded.",
    ),
    input_size: int = typer.Option(
        32, "--input-size", min=8, max=1024, help="Image size for a timm --arch (digits resized)."
    ),
    signature_weight: float | None = typer.Option(
        None,
        "--signature-weight",
        min=0.0,
        help="Weight of the signature regulariser (default 1).",
    ),
    chain_config: Path = _CHAIN_CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a model on scikit-learn's digits while embedding the watermark.

    The seed's SmallResNet by default; `--arch NAME` fine-tunes any timm image classifier
    (randomly initialised) with the `authchain.watermark` hook, on the digits resized to
    --input-size. Writes OUT/model.safetensors and OUT/evidence.json and prints the aid, the
    evidence hash, both p-values against the chain's floors and, if the model passes them, a
    recommended wm_profile. The watermark key is bound to the owner's account.
    """
    from authchain.ml_service.cli import progress_bar
    from authchain.ml_service.errors import MlServiceError
    from authchain.ml_service.owner import train_model, train_timm
    from authchain.ml_service.report import print_report
    from authchain.ml_service.watermark.embed import EmbedSpec, default_signature_weight

    owner_id = _owner_bytes(key_file, owner)
    if signature_weight is None:
        signature_weight = default_signature_weight(arch)
    spec = EmbedSpec(
        trigger_count=triggers, signature_bits=bits, probe_count=probes,
        signature_weight=signature_weight,
    )  # fmt: skip
    floors = _floors(chain_config)
    if arch != "small_resnet":
        try:
            with progress_bar(f"watermarking {arch}") as on_step:
                report = train_timm(
                    owner_id, out, model_name=arch, input_size=input_size, epochs=epochs or 6,
                    seed=seed, spec=spec, floors=floors, on_step=on_step,
                )  # fmt: skip
        except (MlServiceError, ValueError) as exc:
            err.print(f"[red]error:[/] --arch {arch}: {exc}")
            raise typer.Exit(1) from None
        print_report(report, as_json)
        return
    try:
        with progress_bar("watermarking" if watermark else "training (no watermark)") as on_step:
            report = train_model(
                owner_id, out, tiny=tiny, epochs=epochs, seed=seed, watermark=watermark,
                base=base, spec=spec, floors=floors, on_step=on_step,
            )  # fmt: skip
    except MlServiceError as exc:
        err.print(f"[red]error:[/] --from {base}: {exc.reason}: {exc.detail}")
        raise typer.Exit(1) from None
    print_report(report, as_json)


@model_app.command("evidence")
def model_evidence(
    artefact: Path = typer.Argument(..., help="An existing artefact (.safetensors or .pt)."),
    out: Path = typer.Option(Path("data/train/evidence"), "--out", "-o", help="Output directory."),
    key_file: Path | None = _KEY_OPT,
    owner: str | None = _OWNER_OPT,
    triggers: int = _TRIGGERS_OPT,
    bits: int = _BITS_OPT,
    chain_config: Path = _CHAIN_CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make evidence for an existing model under the owner's key, without embedding anything.

    Honest evidence for a model that was never watermarked under this key: it fails
    verification, says so, and recommends no profile.
    """
    from authchain.ml_service.errors import MlServiceError
    from authchain.ml_service.owner import evidence_for
    from authchain.ml_service.report import print_report
    from authchain.ml_service.watermark.embed import EmbedSpec

    spec = EmbedSpec(trigger_count=triggers, signature_bits=bits)
    floors = _floors(chain_config)
    try:
        report = evidence_for(artefact, _owner_bytes(key_file, owner), out, spec, floors)
    except MlServiceError as exc:
        err.print(f"[red]error:[/] {artefact}: {exc.reason}: {exc.detail}")
        raise typer.Exit(1) from None
    print_report(report, as_json)


@model_app.command("verify")
def model_verify(
    artefact: Path = typer.Argument(..., help="Artefact file."),
    evidence: Path = typer.Argument(..., help="Evidence file."),
    owner: str | None = typer.Option(None, "--owner", help="Owner the evidence must be bound to."),
    tau_input: float = typer.Option(0.9, min=0.0, max=1.0),
    tau_feat: float = typer.Option(0.2, min=0.0, max=1.0),
    band_low: float = typer.Option(-0.05, "--logit-band-low"),
    band_high: float = typer.Option(0.05, "--logit-band-high"),
    chain_config: Path = _CHAIN_CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Verify a model against evidence locally, with the service's algorithm and the chain's
    floors (not the derivative check, which needs the chain's registrations)."""
    from authchain.ml_service.errors import MlServiceError
    from authchain.ml_service.owner import verify_local
    from authchain.ml_service.report import print_report
    from authchain.ml_service.watermark.verify import Thresholds

    floors = _floors(chain_config)
    try:
        verdict = verify_local(
            artefact, evidence, owner, Thresholds(tau_input, tau_feat, band_low, band_high),
            floors,
        )  # fmt: skip
    except (MlServiceError, OSError) as exc:
        reason = getattr(exc, "reason", "unreadable")
        err.print(f"[red]error:[/] {reason}: {getattr(exc, 'detail', exc)}")
        raise typer.Exit(1) from None
    print_report(verdict, as_json)
    if not verdict.ok:
        raise typer.Exit(1)


@app.command("ml-service")
def ml_service(
    config: Path | None = typer.Option(
        Path("configs/ml-service.toml"), "--config", "-c", help="ML service config (TOML)."
    ),
    listen: str | None = typer.Option(
        None,
        "--listen",
        help="host:port instead of listen_addr (0.0.0.0:8080: all interfaces).",
    ),
    log_level: str = typer.Option(
        "info", "--log-level", callback=_check_log_level, help="debug | info | warning | error"
    ),
) -> None:
    """Run the ML verification service (POST /verify, artefact and evidence uploads, /metrics)."""
    from authchain.ml_service.cli import run_service

    setup_logging(log_level)
    try:
        run_service(config if config is not None and config.exists() else None, listen, log_level)
    except (ConfigError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


# --- the gateway --------------------------------------------------------------------------


@app.command("gateway")
def gateway(
    config: Path = typer.Option(
        Path("configs/api.toml"), "--config", "-c", help="Gateway config (TOML)."
    ),
    log_level: str = typer.Option(
        "info", "--log-level", callback=_check_log_level, help="debug | info | warning | error"
    ),
) -> None:
    """Run the public API gateway (seed routes + txs, blocks, models, accounts) and /metrics."""
    from prometheus_client import make_asgi_app

    from authchain.gateway.app import create_app
    from authchain.gateway.config import load_api_settings
    from authchain.web import serve_until_signalled

    setup_logging(log_level)
    log = logging.getLogger("authchain.gateway")
    try:
        settings = load_api_settings(config if config.exists() else None)
        app_ = create_app(settings)
        metrics_app = make_asgi_app(registry=app_.state.metrics.registry)
        log.info("metrics exporter listening on http://%s/metrics", settings.metrics_listen_addr)
        log.info("API gateway listening on http://%s", settings.listen_addr)
        log.info("nodes: %s", ", ".join(settings.node_urls))
        asyncio.run(
            serve_until_signalled(
                [(app_, settings.listen_addr), (metrics_app, settings.metrics_listen_addr)]
            )
        )
    except (ConfigError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


# --- using a running chain ------------------------------------------------------------------

_GATEWAY_OPT = typer.Option("http://127.0.0.1:8081", "--gateway", help="Gateway (or node RPC) URL.")
_FREE_PORTS_OPT = typer.Option(
    False, "--free-ports",
    help="Free loopback ports instead of the seed's 8080/8081/9898/9899/26657 (run beside "
    "another devnet); the URLs are printed.",
)  # fmt: skip


@app.command("register")
def register(
    key_file: Path = typer.Option(..., "--key", "-k", help="Owner's key file (signs the tx)."),
    model_dir: Path | None = typer.Option(
        None, "--model", "-m", help="Directory with model.safetensors and evidence.json."
    ),
    aid: str | None = typer.Option(None, "--aid", help="Artefact id (instead of --model)."),
    evidence_hash: str | None = typer.Option(None, "--evidence-hash", help="Evidence hash."),
    upload: str | None = typer.Option(
        None, "--upload", help="ML service URL to upload --model's files to first."
    ),
    upload_token: str | None = typer.Option(
        None,
        "--upload-token",
        envvar="AUTHCHAIN_UPLOAD_TOKEN",
        help="The ML service's upload_token, if it has one.",
    ),
    scheme_id: str | None = typer.Option(
        None, "--scheme", help="The evidence's scheme (default: --model's, else multi_factor_v2)."
    ),
    tau_input: float = typer.Option(0.9, min=0.0, max=1.0),
    tau_feat: float = typer.Option(0.2, min=0.0, max=1.0),
    band_low: float = typer.Option(-0.05, "--logit-band-low"),
    band_high: float = typer.Option(0.05, "--logit-band-high"),
    gateway_url: str = _GATEWAY_OPT,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for commit or rejection."),
) -> None:
    """Register a model with a signed transaction, and follow it into a block."""
    from authchain.chain.types import Aid, EvidenceHash, WmProfile
    from authchain.client import (
        ClientError,
        GatewayClient,
        MlServiceClient,
        ModelFiles,
        register_model,
    )

    key = _read_key(key_file)
    if model_dir is None and (aid is None or evidence_hash is None):
        err.print("[red]error:[/] give --model DIR, or both --aid and --evidence-hash")
        raise typer.Exit(2)
    try:
        ids = None
        if model_dir is None and aid is not None and evidence_hash is not None:
            ids = (
                Aid.from_hex(aid, field="--aid"),
                EvidenceHash.from_hex(evidence_hash, field="--evidence-hash"),
            )
        done = register_model(
            GatewayClient(gateway_url), key, WmProfile(tau_input, tau_feat, band_low, band_high),
            files=ModelFiles.in_dir(model_dir) if model_dir is not None else None, ids=ids,
            scheme_id=scheme_id, wait=wait,
            upload_to=MlServiceClient(upload, token=upload_token) if upload is not None else None,
            on_submitted=lambda r: out.print(f"tx_hash: {r.tx_hash}\naid:     {r.aid}"),
        )  # fmt: skip
    except (ClientError, ChainError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if done.status is not None:
        status = done.status
        detail = f"height {status.height}" if status.status == "committed" else status.reason
        out.print(f"status:  {status.status} ({detail})")
        if status.status != "committed":
            raise typer.Exit(1)


def _read_key(path: Path) -> KeyPair:
    try:
        return read_key_file(path)
    except ChainError as exc:
        err.print(f"[red]error:[/] --key: {exc}")
        raise typer.Exit(1) from None


@app.command("status")
def status(gateway_url: str = _GATEWAY_OPT) -> None:
    """Print the chain's status (height, tip, pool, validators) as JSON."""
    import json

    from authchain.client import ClientError, GatewayClient

    try:
        out.print_json(json.dumps(GatewayClient(gateway_url).status()))
    except ClientError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command("devnet")
def devnet(
    data_dir: Path = typer.Option(Path("data/devnet"), "--data-dir", help="Where it all lives."),
    block_time: float = typer.Option(2.0, "--block-time", min=0.05, help="Seconds per block."),
    free_ports: bool = _FREE_PORTS_OPT,
) -> None:
    """Start the ML service, a node and the gateway on the seed ports; Ctrl-C stops them."""
    import signal
    import threading

    from authchain.devnet import Devnet, DevnetError, DevnetPorts

    ports = DevnetPorts.free() if free_ports else DevnetPorts()
    net = Devnet(data_dir, ports=ports, block_time_secs=block_time)
    try:
        net.start()
    except DevnetError as exc:
        err.print(f"[red]error:[/] {exc}")
        net.stop()
        raise typer.Exit(1) from None
    out.print(
        f"devnet running (data and logs in {data_dir}):\n"
        f"  explorer    {net.gateway_url}/\n"
        f"  gateway     {net.gateway_url}   (docs {net.gateway_url}/docs)\n"
        f"  node RPC    {net.rpc_url}\n  node metrics {net.node_metrics_url}\n"
        f"  ML service  {net.ml_url}\nCtrl-C stops it."
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        dead = [n for n, p in net.processes.items() if not p.running]
        if dead:
            err.print(f"[red]error:[/] {', '.join(dead)} exited; see {data_dir}/logs")
            break
    codes = net.stop()
    out.print(f"stopped: {codes}")


@app.command("testnet")
def testnet(
    validators: int = typer.Option(4, "--validators", "-n", min=1, max=50, help="How many."),
    directory: Path = typer.Option(
        Path("data/testnet"), "--dir", help="Where homes, databases and logs live (reused)."
    ),
    first_ip: str = typer.Option(
        "127.0.0.1", "--first-ip", help="Validator i binds first-ip + i (a loopback address)."
    ),
    chain_id: str = typer.Option("authchain-testnet", "--chain-id", help="The chain id."),
    gateway_port: int = typer.Option(8081, "--gateway-port", help="Gateway port on 127.0.0.1."),
    init_only: bool = typer.Option(
        False, "--init-only", help="Write the CometBFT homes and chain configs, start nothing."
    ),
    compose: bool = typer.Option(
        False, "--compose", help="Configs for deploy/docker-compose.testnet.yml (with --init-only)."
    ),
) -> None:
    """Run N validators on CometBFT, each with its own app, RocksDB and ML service, and a
    gateway in front, until Ctrl-C or SIGTERM (which stop everything it started).

    Validator i binds 127.0.0.(i+1) with CometBFT's default ports (p2p 26656, RPC 26657,
    ABCI 26658) and its ML service on 8080. Logs: DIR/node<i>/logs/. Needs the cometbft
    binary (`make cometbft`).
    """
    import signal as signals
    import subprocess
    import time

    from rich.live import Live

    from authchain.devnet import DevnetError
    from authchain.testnet import Testnet

    setup_logging("warning")
    net = Testnet(
        directory, validators=validators, first_ip=first_ip, chain_id=chain_id,
        gateway_port=gateway_port, gateway_metrics_port=gateway_port + 1818, compose=compose,
    )  # fmt: skip
    if init_only or compose:
        try:
            net.init()
        except (DevnetError, OSError, subprocess.CalledProcessError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        out.print(f"{validators} validators written to {directory}")
        return
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signals.signal(signals.SIGTERM, _stop)
    signals.signal(signals.SIGINT, _stop)
    try:
        with err.status(f"starting {validators} validators in {directory} ..."):
            net.start()
        out.print(
            f"testnet up: gateway and explorer {net.gateway_url}/, logs in {directory}/node*/logs"
        )
        if out.is_terminal:
            with Live(net.status_line(), console=out, refresh_per_second=2) as live:
                while not stopping:
                    time.sleep(1)
                    live.update(net.status_line())
        else:  # a log file or a pipe: a plain line every few seconds
            while not stopping:
                print(net.status_line(), flush=True)
                for _ in range(5):
                    if not stopping:
                        time.sleep(1)
    except (DevnetError, OSError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        codes = net.stop()
        out.print(f"stopped: {', '.join(f'{k}={v}' for k, v in codes.items())}")


@app.command("demo")
def demo(
    data_dir: Path = typer.Option(Path("data/demo"), "--data-dir", help="Wiped and reused."),
    tiny: bool = typer.Option(False, "--tiny", help="A tiny model instead of the full one."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs."),
    free_ports: bool = _FREE_PORTS_OPT,
) -> None:
    """The end-to-end scenario: train, register, reject a clean model and a forgery."""
    from authchain.demo import run_demo
    from authchain.devnet import DevnetError, DevnetPorts

    setup_logging("warning")
    try:
        ports = DevnetPorts.free() if free_ports else DevnetPorts()
        code = run_demo(data_dir, tiny=tiny, epochs=epochs, ports=ports)
    except DevnetError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)
