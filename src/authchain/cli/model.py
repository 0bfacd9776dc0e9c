"""`authchain model train|evidence|verify`: an owner's models, locally. torch loads only when
one of them runs; the work is `authchain.ml_service.owner`'s, the printing `report`'s."""

from __future__ import annotations

from pathlib import Path

import typer

from authchain.chain.config import load_chain_config
from authchain.chain.errors import ChainError, ConfigError
from authchain.chain.types import AccountId
from authchain.cli.common import (
    BAND_HIGH_OPT,
    BAND_LOW_OPT,
    FLOORS_CONFIG_OPT,
    JSON_OPT,
    KEY_OPT,
    OWNER_OPT,
    TAU_FEAT_OPT,
    TAU_INPUT_OPT,
    app,
    existing,
    fail,
    failing_on,
)
from authchain.cli.keys import read_key
from authchain.floors import Floors

model_app = typer.Typer(
    help="Train watermarked models, make evidence, verify locally.", no_args_is_help=True
)
app.add_typer(model_app, name="model")

TRIGGERS_OPT = typer.Option(100, "--triggers", min=1, max=4096, help="Trigger inputs (K).")
BITS_OPT = typer.Option(
    2048, "--bits", min=1, max=4096, help="Signature bits (n), spread over the conv layers."
)


def owner_bytes(key_file: Path | None, owner: str | None) -> bytes:
    """The owner's account id, from exactly one of --key and --owner."""
    if (key_file is None) == (owner is None):
        fail("give exactly one of --key (a key file) or --owner (account hex)", code=2)
    if key_file is not None:
        return bytes(read_key(key_file).account)
    with failing_on(ChainError, code=2):
        return bytes(AccountId.from_hex(owner or "", field="--owner"))


def floors_of(path: Path) -> Floors:
    """The floors of the chain `path` configures (the defaults if there is no such file)."""
    with failing_on(ConfigError, what="--chain-config: ", code=2):
        return load_chain_config(existing(path)).genesis.security.to_floors()


@model_app.command("train")
def model_train(
    out: Path = typer.Option(Path("data/train/model"), "--out", "-o", help="Output directory."),
    key_file: Path | None = KEY_OPT,
    owner: str | None = OWNER_OPT,
    tiny: bool = typer.Option(False, "--tiny", help="A tiny SmallResNet (seconds, for tests)."),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Default 6 (5 with --from); with spares 8 (12 with --tiny)."
    ),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    watermark: bool = typer.Option(
        True, "--watermark/--no-watermark", help="Embed the watermark (default) or not."
    ),
    base: Path | None = typer.Option(
        None, "--from", help="Fine-tune this existing artefact instead of training from scratch."
    ),
    triggers: int = TRIGGERS_OPT,
    bits: int = BITS_OPT,
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
    spares: int = typer.Option(
        3,
        "--spares",
        min=0,
        max=16,
        help="Spare watermarks embedded with the primary, under keys only you hold "
        "(OUT/spares/: keep it private; the registration commits to their hashes).",
    ),
    chain_config: Path = FLOORS_CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Train a model on scikit-learn's digits while embedding the watermark.

    The seed's SmallResNet by default; `--arch NAME` fine-tunes any timm image classifier
    (randomly initialised) with the `authchain.watermark` hook, on the digits resized to
    --input-size. Writes OUT/model.safetensors and OUT/evidence.json and prints the aid, the
    evidence hash, both p-values against the chain's floors and, if the model passes them, a
    recommended wm_profile. The watermark key is bound to the owner's account. With --spares
    S (default 3), S more watermarks under keys derived from a fresh secret go in with it;
    their evidence (OUT/spares/) is never uploaded, and proves a copy is yours even after a
    thief who read the primary evidence trains that watermark out.
    """
    from authchain.ml_service.cli import progress_bar
    from authchain.ml_service.errors import MlServiceError
    from authchain.ml_service.owner import train_model, train_timm
    from authchain.ml_service.report import print_report
    from authchain.ml_service.watermark.embed import EmbedSpec, default_signature_weight

    owner_id = owner_bytes(key_file, owner)
    if signature_weight is None:
        signature_weight = default_signature_weight(arch)
    spec = EmbedSpec(
        trigger_count=triggers, signature_bits=bits, probe_count=probes,
        signature_weight=signature_weight,
    )  # fmt: skip
    floors = floors_of(chain_config)
    if arch != "small_resnet":
        with (
            failing_on(MlServiceError, ValueError, what=f"--arch {arch}: "),
            progress_bar(f"watermarking {arch}") as on_step,
        ):
            report = train_timm(
                owner_id, out, model_name=arch, input_size=input_size, epochs=epochs or 6,
                seed=seed, spec=spec, floors=floors, on_step=on_step, spares=spares,
            )  # fmt: skip
        print_report(report, as_json)
        return
    with (
        failing_on(MlServiceError, what=f"--from {base}: "),
        progress_bar("watermarking" if watermark else "training (no watermark)") as on_step,
    ):
        report = train_model(
            owner_id, out, tiny=tiny, epochs=epochs, seed=seed, watermark=watermark,
            base=base, spec=spec, floors=floors, on_step=on_step, spares=spares,
        )  # fmt: skip
    print_report(report, as_json)


@model_app.command("evidence")
def model_evidence(
    artefact: Path = typer.Argument(..., help="An existing artefact (.safetensors or .pt)."),
    out: Path = typer.Option(Path("data/train/evidence"), "--out", "-o", help="Output directory."),
    key_file: Path | None = KEY_OPT,
    owner: str | None = OWNER_OPT,
    triggers: int = TRIGGERS_OPT,
    bits: int = BITS_OPT,
    chain_config: Path = FLOORS_CONFIG_OPT,
    as_json: bool = JSON_OPT,
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
    floors = floors_of(chain_config)
    with failing_on(MlServiceError, what=f"{artefact}: "):
        report = evidence_for(artefact, owner_bytes(key_file, owner), out, spec, floors)
    print_report(report, as_json)


@model_app.command("verify")
def model_verify(
    artefact: Path = typer.Argument(..., help="Artefact file."),
    evidence: Path = typer.Argument(..., help="Evidence file."),
    owner: str | None = typer.Option(None, "--owner", help="Owner the evidence must be bound to."),
    tau_input: float = TAU_INPUT_OPT,
    tau_feat: float = TAU_FEAT_OPT,
    band_low: float = BAND_LOW_OPT,
    band_high: float = BAND_HIGH_OPT,
    chain_config: Path = FLOORS_CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Verify a model against evidence locally, with the service's algorithm and the chain's
    floors (not the derivative check, which needs the chain's registrations)."""
    from authchain.ml_service.errors import MlServiceError
    from authchain.ml_service.owner import verify_local
    from authchain.ml_service.report import print_report
    from authchain.ml_service.watermark.verify import Thresholds

    floors = floors_of(chain_config)
    with failing_on(MlServiceError), failing_on(OSError, what="unreadable: "):
        verdict = verify_local(
            artefact, evidence, owner, Thresholds(tau_input, tau_feat, band_low, band_high),
            floors,
        )  # fmt: skip
    print_report(verdict, as_json)
    if not verdict.ok:
        raise typer.Exit(1)
