"""`make demo`: the end-to-end devnet scenario, narrated.

1. start the ML service, a node and the gateway (seed ports; data under data/demo);
2. train a full SmallResNet with its watermark for a fresh ML-DSA-65 owner key;
3. upload artefact and evidence, register with a signed tx, wait for the block;
4. try an unwatermarked model (with honest evidence), then two real forgeries by a thief who
   stole the model: fresh evidence of his own for it, and a watermark overwrite (the stolen
   model fine-tuned with his own watermark, which passes every floor on its own);
5. print why each was rejected and the chain's metrics; stop everything.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from authchain.chain import crypto
from authchain.chain.schemas import TxStatus
from authchain.chain.types import SigScheme, WmProfile
from authchain.client import (
    GatewayClient,
    MlServiceClient,
    ModelFiles,
    Registration,
    register_model,
)
from authchain.devnet import Devnet, DevnetPorts
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.cli import progress_bar
from authchain.ml_service.outputs import ModelReport
from authchain.ml_service.owner import evidence_for, train_model
from authchain.ml_service.watermark.embed import EmbedSpec

out = Console(width=None if Console().is_terminal else 110)


def claim_body(
    aid: str, evidence_hash: str, owner: str, profile: dict[str, float]
) -> dict[str, Any]:
    return {
        "aid": aid, "scheme_id": "multi_factor_v2", "evidence_hash": evidence_hash,
        "owner": owner, "wm_profile": profile,
    }  # fmt: skip


def run_demo(
    root: Path, *, tiny: bool = False, epochs: int | None = None, ports: DevnetPorts | None = None
) -> int:
    """Run the scenario on `ports` (the seed's by default); 0 if everything happened as it
    should."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    net = Devnet(root, ports=ports or DevnetPorts(), block_time_secs=2.0)
    out.rule("[bold]authchain demo")
    out.print(f"starting ML service, node and gateway (logs in {root / 'logs'}) ...")
    net.start()
    try:
        return _scenario(net, root, tiny=tiny, epochs=epochs)
    finally:
        codes = net.stop()
        out.print(f"stopped: {', '.join(f'{k} exit {v}' for k, v in codes.items())}")


def _scenario(net: Devnet, root: Path, *, tiny: bool, epochs: int | None) -> int:
    gw, ml = GatewayClient(net.gateway_url), MlServiceClient(net.ml_url)
    status = gw.status()
    out.print(
        f"chain [bold]{status['chain_id']}[/] at height {status['height']}; gateway "
        f"{net.gateway_url}, node RPC {net.rpc_url}, ML service {net.ml_url}"
    )
    owner = crypto.KeyPair.generate(SigScheme.ML_DSA_65)
    crypto.write_key_file(root / "owner.key", owner)
    out.rule("1. train a watermarked SmallResNet")
    out.print(f"owner account {owner.account} (ML-DSA-65 key in {root / 'owner.key'})")
    with progress_bar("watermarking") as on_step:
        model = train_model(
            bytes(owner.account), root / "owner-model", tiny=tiny, epochs=epochs, seed=0,
            watermark=True, base=None, spec=EmbedSpec(), on_step=on_step,
        )  # fmt: skip
    assert model.wm_profile is not None and model.test_accuracy is not None
    out.print(
        f"{model.parameters:,} parameters, digits test accuracy {model.test_accuracy:.3f}\n"
        f"aid {model.aid}\nevidence_hash {model.evidence_hash}\n"
        f"recommended wm_profile {model.to_json()['wm_profile']}"
    )

    out.rule("2. upload and register it (signed transaction)")
    profile = WmProfile(**model.to_json()["wm_profile"])
    registered = register(gw, ml, owner, model, profile)
    tx_hash, committed = registered.tx_hash, registered.status
    assert committed is not None
    ok = committed.status == "committed"
    aid, ev = str(registered.aid), str(registered.evidence_hash)
    verdict = ml.verify(claim_body(aid, ev, owner.account.hex(), model.to_json()["wm_profile"]))
    out.print(
        f"[green]committed[/] in block {committed.height} ({committed.block_hash}; in the "
        f"explorer: {net.gateway_url}/tx/{tx_hash});\n"
        f"inclusion proof ({len(committed.proof or [])} sibling hashes) verified against tx_root\n"
        f"verifier: trigger_acc={verdict['trigger_acc']} feat_dist={verdict['feat_dist']} "
        f"logit_stat={verdict['logit_stat']} p_value={verdict['p_value']:.3g}"
        if ok
        else f"[red]not committed[/]: {committed.reason} {committed.detail}"
    )

    out.rule("3. an unwatermarked model")
    stranger = crypto.KeyPair.generate(SigScheme.ED25519)
    clean_dir = root / "clean-model"
    with progress_bar("training (no watermark)") as on_step:
        train_model(
            bytes(stranger.account), clean_dir / "train", tiny=True, epochs=4, seed=1,
            watermark=False, base=None, spec=EmbedSpec(), on_step=on_step,
        )  # fmt: skip
    clean = evidence_for(
        clean_dir / "train" / "model.safetensors", bytes(stranger.account), clean_dir, EmbedSpec()
    )
    seed_profile = WmProfile(0.9, 0.2, -0.05, 0.05)
    c_status = outcome(register(gw, ml, stranger, clean, seed_profile))

    out.rule("4. a thief's forged claim: the stolen model with fresh evidence")
    thief = crypto.KeyPair.generate(SigScheme.ED25519)
    loaded = load_artefact(model.artefact)
    with torch.no_grad():
        loaded.model.state_dict()["fc.bias"][0] += 1e-6  # one weight nudged: a new aid
    stolen = root / "thief" / "stolen.safetensors"
    stolen.parent.mkdir(parents=True)
    stolen.write_bytes(encode_artefact(loaded.model, loaded.arch, loaded.config))
    fresh = evidence_for(stolen, bytes(thief.account), root / "thief" / "fresh", EmbedSpec())
    out.print(
        f"thief {thief.account.short()} nudged one weight (new aid {fresh.aid[:12]}) and made "
        f"honest evidence under his own key; the tool says passes={fresh.passes}, "
        f"recommends {fresh.to_json()['wm_profile']}. He registers it with the seed profile "
        "anyway."
    )
    f_status = outcome(register(gw, ml, thief, fresh, seed_profile))

    out.rule("5. a watermark overwrite: the stolen model fine-tuned with the thief's watermark")
    with progress_bar("watermarking") as on_step:
        overwrite = train_model(
            bytes(thief.account), root / "thief" / "overwrite", tiny=tiny, epochs=None, seed=5,
            watermark=True, base=model.artefact, spec=EmbedSpec(), on_step=on_step,
        )  # fmt: skip
    o_stats = overwrite.stats
    out.print(
        f"the thief's own watermark: {o_stats.trigger_correct}/{o_stats.trigger_count} "
        f"triggers (p = 2^{o_stats.log2_p_value:.0f}), passes the floors: "
        f"{overwrite.passes}; he registers it with the recommended profile"
    )
    o_profile = WmProfile(**(overwrite.to_json()["wm_profile"] or model.to_json()["wm_profile"]))
    o_status = outcome(register(gw, ml, thief, overwrite, o_profile))

    out.rule("6. chain metrics")
    _print_metrics(net)
    expected = (
        ok
        and c_status.status == "rejected"
        and f_status.status == "rejected"
        and o_status.reason == "carries_registered_watermark"
    )
    out.print(
        "[bold green]demo finished as expected[/]" if expected else "[bold red]unexpected result[/]"
    )
    gw.close()
    ml.close()
    return 0 if expected else 1


def register(
    gw: GatewayClient,
    ml: MlServiceClient,
    key: crypto.KeyPair,
    report: ModelReport,
    profile: WmProfile,
) -> Registration:
    """Upload `report`'s files, register them for `key` and wait for the block."""
    return register_model(
        gw, key, profile, files=ModelFiles(report.artefact, report.evidence), upload_to=ml,
        on_submitted=lambda r: out.print(f"tx {r.tx_hash} queued; waiting for a block ..."),
    )  # fmt: skip


def outcome(registration: Registration) -> TxStatus:
    """Print what became of a registration that should be rejected, and return it."""
    status = registration.status
    assert status is not None
    out.print(
        f"tx {registration.tx_hash}: [bold]{status.status}[/] — {status.reason}\n  {status.detail}"
    )
    return status


def _print_metrics(net: Devnet) -> None:
    text = httpx.get(net.node_metrics_url, timeout=10).text
    wanted = (
        "chain_height", "chain_txs_committed_total", "txpool_size", "txpool_txs_rejected_total",
        "ml_verifier_calls_total", "consensus_ml_cache_hit_ratio",
        "consensus_blocks_rejected_ml_total", "consensus_blocks_deferred_total",
        "consensus_ml_auth_seconds_sum", "consensus_ml_auth_seconds_count",
        "consensus_block_validation_seconds_count",
    )  # fmt: skip
    table = Table("metric", "labels", "value")
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in wanted:
                labels = ",".join(f"{k}={v}" for k, v in s.labels.items())
                table.add_row(s.name, labels, f"{s.value:g}")
    out.print(table)
