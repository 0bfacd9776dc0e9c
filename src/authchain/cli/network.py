"""Using a chain: `authchain register`, `dispute`, `watch` and `status` against a running
one; `devnet`, `testnet` and `demo`, which start one (and stop everything they started)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from authchain.chain.errors import ChainError
from authchain.cli.common import (
    BAND_HIGH_OPT,
    BAND_LOW_OPT,
    FREE_PORTS_OPT,
    GATEWAY_OPT,
    OWNER_MODEL_OPT,
    SIGNING_KEY_OPT,
    TAU_FEAT_OPT,
    TAU_INPUT_OPT,
    UPLOAD_TOKEN_OPT,
    app,
    err,
    fail,
    failing_on,
    out,
    setup_logging,
    stop_on_signals,
    supervise,
)
from authchain.cli.keys import read_key
from authchain.testnet import FUNDED_BALANCE, MIN_FEE


@app.command("register")
def register(
    key_file: Path = SIGNING_KEY_OPT,
    model_dir: Path | None = typer.Option(
        None, "--model", "-m", help="Directory with model.safetensors and evidence.json."
    ),
    aid: str | None = typer.Option(None, "--aid", help="Artefact id (instead of --model)."),
    evidence_hash: str | None = typer.Option(None, "--evidence-hash", help="Evidence hash."),
    sketch: str | None = typer.Option(
        None,
        "--sketch",
        help="With --aid: the artefact's function sketch (hex). Default: computed from "
        "--model, else asked of --upload's ML service (GET /artefacts/AID/sketch).",
    ),
    upload: str | None = typer.Option(
        None, "--upload", help="ML service URL to upload --model's files to first."
    ),
    upload_token: str | None = UPLOAD_TOKEN_OPT,
    scheme_id: str | None = typer.Option(
        None, "--scheme", help="The evidence's scheme (default: --model's, else multi_factor_v2)."
    ),
    tau_input: float = TAU_INPUT_OPT,
    tau_feat: float = TAU_FEAT_OPT,
    band_low: float = BAND_LOW_OPT,
    band_high: float = BAND_HIGH_OPT,
    gateway_url: str = GATEWAY_OPT,
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

    key = read_key(key_file)
    if model_dir is None and (aid is None or evidence_hash is None):
        fail("give --model DIR, or both --aid and --evidence-hash", code=2)
    with failing_on(ClientError, ChainError, OSError):
        ids, declared = None, None
        if sketch is not None:
            try:
                declared = bytes.fromhex(sketch)
            except ValueError:
                fail(f"--sketch: not hex: {sketch!r:.80}", code=2)
        if model_dir is None and aid is not None and evidence_hash is not None:
            ids = (
                Aid.from_hex(aid, field="--aid"),
                EvidenceHash.from_hex(evidence_hash, field="--evidence-hash"),
            )
        done = register_model(
            GatewayClient(gateway_url), key, WmProfile(tau_input, tau_feat, band_low, band_high),
            files=ModelFiles.in_dir(model_dir) if model_dir is not None else None, ids=ids,
            scheme_id=scheme_id, sketch=declared, wait=wait,
            upload_to=MlServiceClient(upload, token=upload_token) if upload is not None else None,
            on_submitted=lambda r: out.print(f"tx_hash: {r.tx_hash}\naid:     {r.aid}"),
        )  # fmt: skip
    if done.status is not None:
        status = done.status
        detail = f"height {status.height}" if status.status == "committed" else status.reason
        out.print(f"status:  {status.status} ({detail})")
        if status.status != "committed":
            raise typer.Exit(1)


@app.command("dispute")
def dispute(
    key_file: Path = SIGNING_KEY_OPT,
    model_dir: Path = OWNER_MODEL_OPT,
    suspect: str = typer.Option(..., "--suspect", help="Aid of the registration to dispute."),
    upload: str = typer.Option(
        ...,
        "--upload",
        help="A validator's ML service: the suspect is fetched from it, and the spare's "
        "evidence revealed to it (validators fetch it from each other; no one else can read it).",
    ),
    upload_token: str | None = UPLOAD_TOKEN_OPT,
    gateway_url: str = GATEWAY_OPT,
    timeout: float = typer.Option(180.0, "--timeout", min=1.0, help="Seconds to wait."),
    force: bool = typer.Option(
        False, "--force", help="File even if the local check finds no spare in the suspect."
    ),
) -> None:
    """Prove that SUSPECT is a copy of your registered model with your next unspent spare
    watermark. The suspect's artefact (public) is checked here first: a spare is revealed only
    if the suspect carries it at the derivative floor. Then its evidence goes to the
    validators, a signed TxDispute is filed, and the verdict printed. Upheld, the suspect
    registration is overturned; failed, the dispute only pays its fee."""
    import tempfile

    from authchain.chain.types import Aid
    from authchain.client import (
        ClientError,
        GatewayClient,
        MlServiceClient,
        ModelFiles,
        file_dispute,
        next_unspent_spare,
    )
    from authchain.ml_service.errors import MlServiceError
    from authchain.ml_service.owner import carried_spares

    key = read_key(key_file)
    files = ModelFiles.in_dir(model_dir)
    gw, ml = GatewayClient(gateway_url), MlServiceClient(upload, token=upload_token)
    with failing_on(ClientError, ChainError, OSError, MlServiceError):
        suspect_aid = Aid.from_hex(suspect, field="--suspect")
        index = next_unspent_spare(gw.model(files.aid), files)
        with tempfile.TemporaryDirectory() as tmp:
            copy = ml.download_artefact(suspect_aid, Path(tmp) / "suspect.safetensors")
            [(carried, stats)] = carried_spares(copy, [files.spares[index]])
        out.print(f"local check: spare {index} in the suspect: {stats}")
        if not carried and not force:
            fail(
                f"the suspect does not carry spare {index} at the derivative floor: not filed "
                "(the spare stays secret; --force files anyway)"
            )
        done = file_dispute(
            gw,
            key,
            files,
            suspect_aid,
            spare_index=index,
            upload_to=ml,
            timeout=timeout,
            on_submitted=lambda d: out.print(
                f"tx_hash: {d.tx_hash}\nearlier: {d.earlier}\nsuspect: {d.suspect}\n"
                f"spare:   {d.spare_index} (its evidence is now revealed to the validators)"
            ),
        )
    status = done.status
    if status is None or status.status != "committed" or done.verdict is None:
        reason = status.reason if status is not None else "no status"
        out.print(f"status:  {status.status if status else 'unknown'} ({reason})")
        raise typer.Exit(1)
    verdict = done.verdict
    if verdict.upheld:
        out.print(f"verdict: upheld at height {verdict.height}: {verdict.suspect_aid} is "
                  "overturned")  # fmt: skip
        return
    out.print(f"verdict: failed ({verdict.reason}) at height {verdict.height}; the fee is paid")
    raise typer.Exit(1)


@app.command("watch")
def watch(
    key_file: Path = SIGNING_KEY_OPT,
    model_dir: Path = OWNER_MODEL_OPT,
    upload: str = typer.Option(
        ...,
        "--upload",
        help="A validator's ML service: suspects are fetched from it, and a "
        "spare is revealed to it only when a dispute is filed.",
    ),
    upload_token: str | None = UPLOAD_TOKEN_OPT,
    gateway_url: str = GATEWAY_OPT,
    every: float = typer.Option(2.0, "--every", min=0.1, help="Seconds between polls."),
) -> None:
    """Follow newly committed registrations; check each one locally against your unspent
    spare watermarks (one forward pass over their triggers, plus the signature reads) and file
    a dispute when one carries a spare. Shows a live status line and logs what it checked;
    Ctrl-C or SIGTERM stop it."""
    from authchain.client import ClientError, GatewayClient, MlServiceClient, ModelFiles
    from authchain.watch import Watcher

    setup_logging("info")
    files = ModelFiles.in_dir(model_dir)
    watcher = Watcher(
        GatewayClient(gateway_url), MlServiceClient(upload, token=upload_token),
        read_key(key_file), files,
    )  # fmt: skip
    with failing_on(ClientError, ChainError, OSError):
        mine = watcher.gw.model(files.aid)
    out.print(f"watching for copies of {mine.aid} ({len(mine.spares)} spares, "
              f"{len(mine.spent_spares)} spent) on {gateway_url}")  # fmt: skip

    def tick() -> str | None:
        try:
            for event in watcher.tick():
                out.print(event)
        except (ClientError, OSError) as exc:  # the gateway is away: try again next poll
            err.print(f"poll failed: {exc}")
        live.update(watcher.stats.line())
        return None

    with stop_on_signals() as stopped, out.status(watcher.stats.line()) as live:
        tick()
        supervise(stopped, tick, every)
    out.print(watcher.stats.line().replace("watching", "stopped"))


@app.command("status")
def status(gateway_url: str = GATEWAY_OPT) -> None:
    """Print the chain's status (height, tip, pool, validators) as JSON."""
    import json

    from authchain.client import ClientError, GatewayClient

    with failing_on(ClientError):
        out.print_json(json.dumps(GatewayClient(gateway_url).status()))


@app.command("devnet")
def devnet(
    data_dir: Path = typer.Option(Path("data/devnet"), "--data-dir", help="Where it all lives."),
    block_time: float = typer.Option(2.0, "--block-time", min=0.05, help="Seconds per block."),
    free_ports: bool = FREE_PORTS_OPT,
) -> None:
    """Start the ML service, a node and the gateway on the seed ports; Ctrl-C stops them."""
    from authchain.devnet import Devnet, DevnetError, DevnetPorts

    ports = DevnetPorts.free() if free_ports else DevnetPorts()
    net = Devnet(data_dir, ports=ports, block_time_secs=block_time)
    with stop_on_signals() as stopped:
        try:
            net.start()
        except DevnetError as exc:
            net.stop()
            fail(str(exc))
        out.print(
            f"devnet running (data and logs in {data_dir}):\n"
            f"  explorer    {net.gateway_url}/\n"
            f"  gateway     {net.gateway_url}   (docs {net.gateway_url}/docs)\n"
            f"  node RPC    {net.rpc_url}\n  node metrics {net.node_metrics_url}\n"
            f"  ML service  {net.ml_url}\nCtrl-C stops it."
        )

        def check() -> str | None:
            dead = [n for n, p in net.processes.items() if not p.running]
            return f"{', '.join(dead)} exited; see {data_dir}/logs" if dead else None

        why = supervise(stopped, check)
    if why != "stopped":
        err.print(f"[red]error:[/] {why}")
    codes = net.stop()
    out.print(f"stopped: {codes}")


class AbciTransport(StrEnum):
    """`authchain testnet --abci-transport`."""

    SOCKET = "socket"
    GRPC = "grpc"


class Mempool(StrEnum):
    """`authchain testnet --mempool`."""

    COMETBFT = "cometbft"
    APP = "app"


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
    min_fee: int = typer.Option(
        MIN_FEE,
        "--min-fee",
        min=0,
        help="genesis.min_fee: what every tx pays at least (a full mempool costs its filler).",
    ),
    fund: list[str] = typer.Option(
        [],
        "--fund",
        metavar="ACCOUNT",
        help="Give this account (hex) 10^9 in genesis, to pay fees with (repeatable; read "
        "when DIR is first written).",
    ),
    abci_transport: AbciTransport = typer.Option(
        AbciTransport.SOCKET,
        "--abci-transport",
        help="How CometBFT reaches each app. The socket is faster; gRPC caps blocks at 4 MiB "
        "(README, 'ABCI transports'). Read when DIR is first written.",
    ),
    mempool: Mempool = typer.Option(
        Mempool.APP,
        "--mempool",
        help="Who holds the pending txs: each app's own durable pool (CometBFT's mempool off; "
        "the gateway submits to the apps, which relay to each other), or CometBFT's mempool "
        "(about half the throughput: README, 'Where pending txs live'). Read when DIR is "
        "first written.",
    ),
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
    import itertools
    import subprocess

    from rich.live import Live

    from authchain.chain.types import AccountId
    from authchain.devnet import DevnetError
    from authchain.testnet import Testnet

    setup_logging("warning")
    if compose and abci_transport is AbciTransport.GRPC:
        raise typer.BadParameter(
            "the chain's container image serves the ABCI socket only (it leaves grpcio out)",
            param_hint="'--abci-transport' with '--compose'",
        )
    with failing_on(ChainError, code=2):
        funded = {str(AccountId.from_hex(a, field="--fund")): FUNDED_BALANCE for a in fund}
    net = Testnet(
        directory, validators=validators, first_ip=first_ip, chain_id=chain_id,
        gateway_port=gateway_port, gateway_metrics_port=gateway_port + 1818, compose=compose,
        min_fee=min_fee, funded=funded, abci_transport=abci_transport.value,
        mempool=mempool.value,
    )  # fmt: skip
    if init_only or compose:
        with failing_on(DevnetError, OSError, subprocess.CalledProcessError):
            net.init()
        out.print(f"{validators} validators written to {directory}")
        return
    try:
        with stop_on_signals() as stopped:
            with err.status(f"starting {validators} validators in {directory} ..."):
                net.start()
            out.print(
                f"testnet up: gateway and explorer {net.gateway_url}/, logs in "
                f"{directory}/node*/logs; pending txs in "
                + ("the apps' pools" if net.mempool == "app" else "CometBFT's mempool")
                + ("" if net.mempool == mempool.value else f" (as {directory} was written)")
            )
            if out.is_terminal:
                with Live(net.status_line(), console=out, refresh_per_second=2) as live:
                    supervise(stopped, lambda: live.update(net.status_line()))
            else:  # a log file or a pipe: a plain line every five seconds
                seconds = itertools.count(1)

                def every_fifth() -> None:
                    if next(seconds) % 5 == 0:
                        print(net.status_line(), flush=True)

                print(net.status_line(), flush=True)
                supervise(stopped, every_fifth)
    except (DevnetError, OSError, ValueError) as exc:
        fail(str(exc))
    finally:
        codes = net.stop()
        out.print(f"stopped: {', '.join(f'{k}={v}' for k, v in codes.items())}")


@app.command("demo")
def demo(
    data_dir: Path = typer.Option(Path("data/demo"), "--data-dir", help="Wiped and reused."),
    tiny: bool = typer.Option(False, "--tiny", help="A tiny model instead of the full one."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs."),
    free_ports: bool = FREE_PORTS_OPT,
) -> None:
    """The end-to-end scenario: train, register, reject a clean model and a forgery."""
    from authchain.demo import run_demo
    from authchain.devnet import DevnetError, DevnetPorts

    setup_logging("warning")
    with failing_on(DevnetError):
        ports = DevnetPorts.free() if free_ports else DevnetPorts()
        code = run_demo(data_dir, tiny=tiny, epochs=epochs, ports=ports)
    raise typer.Exit(code)
