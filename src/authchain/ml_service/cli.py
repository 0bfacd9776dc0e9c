"""`authchain model ...` and `authchain ml-service`: the ML side of the command line.

Imported lazily by `authchain.cli`, so the chain commands never load torch.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from authchain.floors import DEFAULT_FLOORS, Floors, is_tail_within
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.data import Dataset, load_digits_split
from authchain.ml_service.errors import MlServiceError
from authchain.ml_service.models import SmallResNet, SmallResNetConfig, get_architecture
from authchain.ml_service.train import TrainConfig, evaluate_accuracy, train
from authchain.ml_service.watermark.embed import (
    EmbedSpec,
    make_evidence,
    new_key_material,
    recommend_profile,
)
from authchain.ml_service.watermark.evidence import KeyMaterial, parse_evidence
from authchain.ml_service.watermark.verify import Thresholds, compute_stats, decide
from authchain.settings import ConfigError

if TYPE_CHECKING:
    from authchain.watermark import Watermark  # which imports this module

err = Console(stderr=True)

ARTEFACT_NAME = "model.safetensors"
EVIDENCE_NAME = "evidence.json"


def train_command(
    owner: bytes,
    out_dir: Path,
    *,
    tiny: bool,
    epochs: int | None,
    seed: int,
    watermark: bool,
    base: Path | None,
    spec: EmbedSpec,
    key_seed: bytes | None = None,
    floors: Floors = DEFAULT_FLOORS,
) -> dict[str, Any]:
    """Train (or fine-tune `base`), embed the watermark, write artefact + evidence."""
    arch = get_architecture("small_resnet")
    if base is not None:
        loaded = load_artefact(base)
        model, arch, config = loaded.model, loaded.arch, loaded.config
        default_epochs = 5
    else:
        config = SmallResNetConfig.tiny() if tiny else SmallResNetConfig()
        torch.manual_seed(seed)
        model = SmallResNet(config)
        default_epochs = 6
    train_data, test_data = load_digits_split()
    key = new_key_material(owner, arch, config.num_classes, spec, key_seed, model)
    cfg = TrainConfig(
        epochs=epochs or default_epochs, seed=seed, lr=2e-3 if base is not None else 3e-3
    )
    what = "watermarking" if watermark else "training (no watermark)"
    with _progress() as progress:
        task = progress.add_task(what, total=None, info="")

        def on_step(step: int, total: int, parts: dict[str, float]) -> None:
            info = " ".join(f"{k}={v:.3f}" for k, v in parts.items())
            progress.update(task, completed=step, total=total, info=info)

        train(model, train_data, cfg, key=key if watermark else None, spec=spec, on_step=on_step)
    return write_outputs(
        model, arch, config, key, spec, out_dir, floors,
        test_acc=evaluate_accuracy(model, test_data),
    )  # fmt: skip


def train_timm_command(
    owner: bytes,
    out_dir: Path,
    *,
    model_name: str,
    input_size: int,
    epochs: int,
    seed: int,
    spec: EmbedSpec,
    lr: float = 2e-3,
    floors: Floors = DEFAULT_FLOORS,
    key_seed: bytes | None = None,
) -> dict[str, Any]:
    """Train timm's `model_name` (randomly initialised: nothing is downloaded) on the digits,
    resized to `input_size`, with the watermark hook of `authchain.watermark`; write artefact
    and evidence like `train_command`."""
    from authchain.ml_service.models import TimmConfig
    from authchain.ml_service.models.timm_arch import build_timm, timm_models_allowed
    from authchain.watermark import Watermark

    config = {"model": model_name, "num_classes": 10, "in_chans": 3,
              "input_size": [input_size, input_size]}  # fmt: skip
    torch.manual_seed(seed)
    with timm_models_allowed([model_name]):
        model = build_timm(TimmConfig(model_name, 10, 3, (input_size, input_size)))
    wm = Watermark(model, key=owner, arch="timm", config=config, spec=spec, floors=floors,
                   seed=seed, key_seed=key_seed)  # fmt: skip
    train_data, test_data = load_digits_split(size=input_size)
    train_with_hook(model, wm, train_data, epochs=epochs, lr=lr, seed=seed,
                    label=f"watermarking {model_name}")  # fmt: skip
    return wm.finish(out_dir, test_accuracy=evaluate_accuracy(model, test_data), quiet=True)


def train_with_hook(
    model: torch.nn.Module, wm: Watermark, data: Dataset, *, epochs: int, lr: float, seed: int,
    label: str,
) -> torch.nn.Module:  # fmt: skip
    """`epochs` of AdamW on `data` (batches of 64, shuffled by `seed`) with `wm`'s triggers
    mixed in and its signature loss added, as the README's hook example trains; a progress
    bar on stderr. Returns `model`, in eval mode."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    batch = 64
    steps = epochs * -(-len(data) // batch)
    with _progress() as progress:
        task = progress.add_task(label, total=steps, info="")
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(data), generator=generator)
            for i in range(0, len(data), batch):
                idx = order[i : i + batch]
                x, y = wm.mix(data.x[idx], data.y[idx])
                task_loss = torch.nn.functional.cross_entropy(model(x), y)
                sig = wm.regulariser()
                optimiser.zero_grad(set_to_none=True)
                (task_loss + sig).backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                info = f"loss={task_loss.item():.3f} sig={sig.item():.3f}"
                progress.update(task, advance=1, info=info)
    return model.eval()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def write_outputs(
    model: torch.nn.Module,
    arch: Any,
    config: Any,
    key: KeyMaterial,
    spec: EmbedSpec,
    out_dir: Path,
    floors: Floors,
    test_acc: float | None = None,
    artefact: bytes | None = None,
    artefact_name: str = ARTEFACT_NAME,
) -> dict[str, Any]:
    """Write artefact (encoded from `model` unless given) and evidence to `out_dir`; return
    their ids, the model's statistics, whether it passes the chain's floors and, only if it
    does, a recommended `wm_profile` (never looser than the floors)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if artefact is None:
        artefact = encode_artefact(model, arch, config)
    evidence = make_evidence(model, key, arch, spec)
    evidence_bytes = evidence.to_bytes()
    (out_dir / artefact_name).write_bytes(artefact)
    (out_dir / EVIDENCE_NAME).write_bytes(evidence_bytes)
    stats = compute_stats(model, evidence, precision="float64")  # exact figures for the owner
    profile = recommend_profile(stats, floors)
    return {
        "aid": blake3.blake3(artefact).hexdigest(),
        "evidence_hash": blake3.blake3(evidence_bytes).hexdigest(),
        "owner": key.owner.hex(),
        "scheme_id": evidence.scheme_id,
        "artefact": str(out_dir / artefact_name),
        "evidence": str(out_dir / EVIDENCE_NAME),
        "passes": profile is not None,
        "wm_profile": asdict(profile) if profile is not None else None,
        "strength": {
            "trigger_count": evidence.trigger_count,
            "signature_bits": evidence.signature_bits,
            "num_classes": evidence.num_classes,
        },
        "floors": asdict(floors),
        "stats": asdict(stats),
        "test_accuracy": test_acc,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def evidence_command(
    artefact: Path,
    owner: bytes,
    out_dir: Path,
    spec: EmbedSpec,
    floors: Floors = DEFAULT_FLOORS,
    key_seed: bytes | None = None,
) -> dict[str, Any]:
    """Evidence for an existing model under `owner`'s fresh key (no embedding). Honest: a
    model that does not carry the key's watermark fails, and gets no recommended profile."""
    loaded = load_artefact(artefact)
    key = new_key_material(
        owner, loaded.arch, loaded.config.num_classes, spec, key_seed, loaded.model
    )
    return write_outputs(
        loaded.model, loaded.arch, loaded.config, key, spec, out_dir, floors,
        artefact=artefact.read_bytes(), artefact_name=f"model{artefact.suffix}",
    )  # fmt: skip


def verify_command(
    artefact: Path,
    evidence_path: Path,
    owner: str | None,
    profile: Thresholds,
    floors: Floors = DEFAULT_FLOORS,
) -> dict[str, Any]:
    """Verify locally, as the service would (without its hash-by-id lookup and the
    derivative check, which need the chain's registrations)."""
    loaded = load_artefact(artefact)
    evidence = parse_evidence(evidence_path.read_bytes())
    if owner is not None and evidence.owner != owner:
        return {"ok": False, "reason": "owner_mismatch"}
    reason, stats = decide(
        compute_stats(loaded.model, evidence),
        profile,
        floors,
        lambda: compute_stats(loaded.model, evidence, precision="float64"),
    )
    return {"ok": reason is None, "reason": reason, "floors": asdict(floors), **asdict(stats)}


def print_result(result: dict[str, Any], as_json: bool) -> None:
    """JSON on stdout for scripts, or a short readable summary."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out = Console()
    for key in ("aid", "evidence_hash", "owner", "artefact", "evidence"):
        if key in result:
            out.print(f"{key + ':':15}{result[key]}")
    stats = result.get("stats", result)
    floors = result.get("floors", asdict(DEFAULT_FLOORS))
    if "trigger_correct" in stats:
        for line in describe_factors(stats, floors):
            out.print(line)
    if result.get("test_accuracy") is not None:
        out.print(f"{'test accuracy:':15}{result['test_accuracy']:.4f}")
    if "passes" in result:
        if result["passes"]:
            out.print(f"{'wm_profile:':15}{json.dumps(result['wm_profile'])}  (recommended)")
        else:
            out.print(
                "[bold red]this model does not carry this key's watermark at the chain's floors:"
                " it fails verification[/] (no wm_profile is recommended; do not register it)"
            )
    if "ok" in result:
        out.print(f"{'ok:':15}{result['ok']}  {result.get('reason') or ''}")


def describe_factors(stats: dict[str, Any], floors: dict[str, Any]) -> list[str]:
    """Each factor's statistic and p-value against the chain's floor, one line each."""

    def mark(successes: int, trials: int, classes: int, floor: int) -> str:
        within = is_tail_within(successes, trials, classes, floor)  # exact, as the chain decides
        return "[green]ok[/]" if within else "[red]above the floor[/]"

    trigger = mark(
        stats["trigger_correct"], stats["trigger_count"], stats["num_classes"],
        floors["trigger_p_log2"],
    )  # fmt: skip
    return [
        f"{'trigger:':15}{stats['trigger_correct']}/{stats['trigger_count']} correct "
        f"(acc {stats['trigger_acc']:.3f}), "
        f"{_probability(stats['p_value'], stats['log2_p_value'])}, "
        f"floor 2^-{floors['trigger_p_log2']} {trigger}",
        f"{'signature:':15}{stats['feat_matches']}/{stats['signature_bits']} bits "
        f"(feat_dist {stats['feat_dist']:.3f}), "
        f"{_probability(stats['feat_p_value'], stats['log2_feat_p_value'])}, "
        f"floor 2^-{floors['feature_p_log2']} "
        f"{mark(stats['feat_matches'], stats['signature_bits'], 2, floors['feature_p_log2'])}",
        f"{'logits:':15}largest deviation from the evidence {stats['logit_stat']:.3g}",
    ]


def _probability(p: float, log2_p: float) -> str:
    """A p-value as printed, `p = 0.22 = 2^-2.2`; only its log2 where a double underflows."""
    return f"p = {p:.3g} = 2^{log2_p:.1f}" if p > 0 else f"p = 2^{log2_p:.1f}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_service(config: Path | None, listen: str | None, log_level: str) -> None:
    """Run the ML service until SIGINT/SIGTERM, then exit cleanly (status 0)."""
    import asyncio

    from authchain.ml_service.config import load_ml_settings
    from authchain.ml_service.main import create_app
    from authchain.web import serve_until_signalled

    overrides = {"listen_addr": listen} if listen is not None else {}
    settings = load_ml_settings(config, **overrides)
    host = settings.listen_addr.rpartition(":")[0].strip("[]")
    if settings.upload_token is None and not _loopback(host):
        raise ConfigError(
            f"listen_addr {settings.listen_addr} is reachable beyond this machine: set "
            "upload_token (ML_SERVICE_UPLOAD_TOKEN) so that strangers cannot upload"
        )
    app = create_app(settings)
    logging.getLogger(__name__).info(
        "ML service on http://%s (models %s, evidence %s, device %s)",
        settings.listen_addr, settings.model_root, settings.evidence_root,
        app.state.service.verifier.device,
    )  # fmt: skip

    asyncio.run(serve_until_signalled([(app, settings.listen_addr)], log_level))


__all__ = [
    "MlServiceError",
    "evidence_command",
    "print_result",
    "run_service",
    "train_command",
    "verify_command",
]
