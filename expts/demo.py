"""The seed's demo experiment, without Docker: several watermarked models with varied
`wm_profile`s registered against a local stack; block-time and verification-latency statistics
printed and written as CSV.

    .venv/bin/python expts/demo.py --start            # its own devnet on free ports
    .venv/bin/python expts/demo.py                    # against `make devnet` (seed ports)

Writes <out>/blocks.csv (height, timestamp_ms, interval_ms, txs) and
<out>/registrations.csv (model, profile, status, reason, commit_latency_s, factor statistics).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from authchain.chain import crypto
from authchain.chain.types import Aid, EvidenceHash, SigScheme, WmProfile
from authchain.client import ClientError, GatewayClient, MlServiceClient
from authchain.devnet import Devnet, DevnetPorts
from authchain.ml_service.owner import train_model
from authchain.ml_service.watermark.embed import EmbedSpec

REPO = Path(__file__).resolve().parent.parent

PROFILES = [
    ("seed", WmProfile(0.9, 0.2, -0.05, 0.05)),
    ("strict", WmProfile(0.99, 0.05, -0.001, 0.001)),
    ("at_the_floors", WmProfile(0.46, 0.2265625, -0.05, 0.05)),  # the loosest allowed
    ("impossible_band", WmProfile(0.9, 0.2, 0.01, 0.02)),  # logit_stat is 0: must fail
    ("below_the_floors", WmProfile(0.3, 0.4, -0.5, 0.5)),  # refused at CheckTx
]


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"n={len(values)} mean={statistics.mean(values):.1f} "
        f"median={statistics.median(values):.1f} min={min(values):.1f} max={max(values):.1f}"
    )


def run(
    gateway: str, ml_url: str, metrics_url: str, out: Path, n_models: int, n_blocks: int
) -> None:
    gw, ml = GatewayClient(gateway), MlServiceClient(ml_url)
    start_height = gw.status()["height"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        trained = []
        for i in range(n_models):
            name, profile = PROFILES[i % len(PROFILES)]
            owner = crypto.KeyPair.generate(SigScheme.ED25519)
            print(f"model {i}: training a tiny watermarked SmallResNet (profile {name}) ...")
            result = train_model(
                bytes(owner.account), Path(tmp) / f"m{i}", tiny=True, epochs=None, seed=i,
                watermark=True, base=None, spec=EmbedSpec(),
            )  # fmt: skip
            aid = ml.upload_artefact(result.artefact)
            ev = ml.upload_evidence(result.evidence)
            trained.append((i, name, profile, aid, ev, owner))
        submitted = []  # all at once, so they compete for the same blocks
        for i, name, profile, aid, ev, owner in trained:
            sent = time.monotonic()
            try:
                tx_hash = gw.register_signed(
                    owner,
                    Aid.from_hex(aid),
                    EvidenceHash.from_hex(ev),
                    profile,
                    sketch=ml.sketch(Aid.from_hex(aid)),
                )
            except ClientError as exc:  # CheckTx: a profile looser than the chain's floors
                rows.append({
                    "model": i, "profile": name, **profile_dict(profile), "tx_hash": "",
                    "status": "refused", "reason": exc.reason, "height": None,
                    "commit_latency_s": None, "trigger_acc": None, "feat_dist": None,
                    "logit_stat": None, "p_value": None,
                })  # fmt: skip
                print(f"model {i} ({name}): refused at CheckTx: {exc.detail}")
                continue
            submitted.append((i, name, profile, aid, ev, owner, tx_hash, sent))
        for i, name, profile, aid, ev, owner, tx_hash, sent in submitted:
            status = gw.wait_for_tx(tx_hash)
            latency = time.monotonic() - sent
            verdict = ml.verify(
                {"aid": aid, "scheme_id": "multi_factor_v2", "evidence_hash": ev,
                 "owner": owner.account.hex(), "wm_profile": profile_dict(profile)}
            )  # fmt: skip
            rows.append({
                "model": i, "profile": name, **profile_dict(profile), "tx_hash": tx_hash,
                "status": status.status, "reason": status.reason or "", "height": status.height,
                "commit_latency_s": round(latency, 3), "trigger_acc": verdict["trigger_acc"],
                "feat_dist": verdict["feat_dist"], "logit_stat": verdict["logit_stat"],
                "p_value": verdict["p_value"],
            })  # fmt: skip
            print(f"model {i} ({name}): {status.status} {status.reason or ''} in {latency:.2f}s")
    target = start_height + n_blocks
    print(f"waiting for block {target} ...")
    while gw.status()["height"] < target:
        time.sleep(0.5)
    blocks = [gw.block(h) for h in range(max(1, start_height), gw.status()["height"] + 1)]
    block_rows = []
    for prev, block in itertools.pairwise(blocks):
        block_rows.append({
            "height": block["height"], "timestamp_ms": block["header"]["timestamp"],
            "interval_ms": block["header"]["timestamp"] - prev["header"]["timestamp"],
            "txs": len(block["txs"]),
        })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "blocks.csv", block_rows)
    write_csv(out / "registrations.csv", rows)
    print(f"block interval ms: {summary([r['interval_ms'] for r in block_rows])}")
    latencies = [r["commit_latency_s"] for r in rows if r["commit_latency_s"] is not None]
    print(f"commit latency s:  {summary(latencies)}")
    print(f"V_auth time per block or proposal (node): {node_ml_auth(metrics_url)}")
    print(f"wrote {out / 'blocks.csv'} and {out / 'registrations.csv'}")
    gw.close()
    ml.close()


def profile_dict(p: WmProfile) -> dict[str, float]:
    return {"tau_input": p.tau_input, "tau_feat": p.tau_feat,
            "logit_band_low": p.logit_band_low, "logit_band_high": p.logit_band_high}  # fmt: skip


def node_ml_auth(metrics_url: str) -> str:
    """Mean of the node's consensus_ml_auth_seconds histogram."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    values = {
        s.name: s.value
        for f in text_string_to_metric_families(httpx.get(metrics_url, timeout=10).text)
        for s in f.samples
        if s.name.startswith("consensus_ml_auth_seconds_")
    }
    count = values.get("consensus_ml_auth_seconds_count", 0)
    if not count:
        return "no V_auth runs"
    return f"mean {1000 * values['consensus_ml_auth_seconds_sum'] / count:.1f} ms over {count:g}"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", action="store_true", help="start a devnet on free ports")
    parser.add_argument("--gateway", default="http://127.0.0.1:8081")
    parser.add_argument("--ml", default="http://127.0.0.1:8080")
    parser.add_argument("--node-metrics", default="http://127.0.0.1:9898/metrics")
    parser.add_argument("--models", type=int, default=len(PROFILES))
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "data" / "expts")
    args = parser.parse_args()
    if not args.start:
        run(args.gateway, args.ml, args.node_metrics, args.out, args.models, args.blocks)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ports = DevnetPorts.free()
        with Devnet(Path(tmp), ports=ports, block_time_secs=1.0, repo=REPO) as net:
            run(
                net.gateway_url, net.ml_url, net.node_metrics_url, args.out, args.models,
                args.blocks,
            )  # fmt: skip


if __name__ == "__main__":
    main()
