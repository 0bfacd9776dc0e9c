"""Blocks/s, commit latency and registrations/s of a CometBFT testnet, for 1 and 4 validators.

    .venv/bin/python benchmarks/cometbft.py                       # 1 and 4 validators
    .venv/bin/python benchmarks/cometbft.py --validators 4 --quick

Each network is a real `authchain testnet` (cometbft, app and ML service per validator, on
127.0.0.x) with timeout_commit 1 s. Measured per network, each against a floor from the same
run:
- blocks/s over an idle window, as a ratio to 1/timeout_commit (what CometBFT allows);
- commit latency of signed transfers (submit -> committed, through the gateway), median and
  p90, as a ratio to timeout_commit;
- transfers/s: pre-signed ML-DSA-65 transfers posted in batches through the gateway, as a
  ratio to one core's ML-DSA-65 verify rate;
- registrations/s: R honest registrations of one owner's model variants (one weight nudged:
  R aids, one evidence file) submitted at once, as a ratio to the rate one ML service
  verifies R other variants alone (`/verify` back to back, cold: the V_auth floor).
Writes CSV and a PNG to --out. Nothing is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from authchain.chain import codec, crypto
from authchain.chain.types import Aid, EvidenceHash, SigScheme, TxTransfer, WmProfile
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import free_port
from authchain.ml_service.artefact import encode_artefact, load_artefact
from authchain.ml_service.owner import train_model
from authchain.ml_service.watermark.embed import EmbedSpec
from authchain.ml_service.watermark.sketch import artefact_sketch
from authchain.testnet import Testnet

REPO = Path(__file__).resolve().parents[1]
PROFILE = WmProfile(0.9, 0.2, -0.05, 0.05)
FUNDED = REPO / "configs" / "devnet-account.key"  # genesis funds it (configs/devnet.toml)
COMMIT_SECS = 1.0


def variants(root: Path, owner: crypto.KeyPair, count: int) -> tuple[list[Path], Path]:
    """`count` artefacts of one watermarked model, each with one weight nudged, and the
    evidence file they share."""
    result = train_model(
        bytes(owner.account), root / "model", tiny=True, epochs=None, seed=3, watermark=True,
        base=None, spec=EmbedSpec(),
    )  # fmt: skip
    loaded = load_artefact(result.artefact)
    paths = []
    for i in range(count):
        with torch.no_grad():
            loaded.model.state_dict()["fc.bias"][i % 10] += 1e-6
        path = root / f"variant{i}.safetensors"
        path.write_bytes(encode_artefact(loaded.model, loaded.arch, loaded.config))
        paths.append(path)
    return paths, result.evidence


MLDSA_FLOOR = [0.0]
"""One core's ML-DSA-65 verify rate, measured once per run (`crypto.verify_rate`)."""


def bulk_transfers(gw: GatewayClient, payer: crypto.KeyPair, chain_id: str, count: int) -> float:
    """Committed transfers/s: `count` pre-signed ML-DSA-65 transfers from 8 funded senders
    (the apps' pool policy is opened up for them), posted through the gateway's
    `POST /txs/batch` (CometBFT takes them one by one)."""
    senders = [crypto.KeyPair.generate(SigScheme.ML_DSA_65) for _ in range(8)]
    nonce = gw.account(payer.account)["next_nonce"]
    funding = [
        crypto.sign_tx(TxTransfer(payer.account, s.account, count, 0, nonce + i), payer, chain_id)
        for i, s in enumerate(senders)
    ]
    gw.submit_many(funding)
    for tx in funding:
        gw.wait_for_tx(str(codec.compute_tx_hash(tx)), timeout=60)
    txs = [
        crypto.sign_tx(TxTransfer(s.account, payer.account, 1, 0, n), s, chain_id)
        for n in range(count // len(senders))
        for s in senders
    ]
    started = time.monotonic()
    answer = gw.submit_many(txs)
    assert answer.accepted == len(txs), answer.results[:3]
    while sum(gw.account(s.account)["nonce"] for s in senders) < len(txs):
        time.sleep(0.2)
    return len(txs) / (time.monotonic() - started)


def measure(
    n: int, window: float, transfers: int, registrations: int, root: Path, bulk: int
) -> dict[str, float]:
    net = Testnet(
        root / f"net{n}", validators=n, first_ip=f"127.0.{40 + n}.1", repo=REPO,
        gateway_port=free_port(), gateway_metrics_port=free_port(), timeout_commit="1s",
        app_env={
            "AUTHCHAIN_CONSENSUS__MAX_NONCE_GAP": str(bulk),
            "AUTHCHAIN_CONSENSUS__MAX_POOL_TXS_PER_SENDER": str(bulk),
            "AUTHCHAIN_CONSENSUS__MAX_BLOCK_TXS": str(bulk),
            "AUTHCHAIN_CONSENSUS__MAX_BLOCK_SIZE_BYTES": str(16 * 1024 * 1024),
        },
    )  # fmt: skip
    owner = crypto.KeyPair.generate(SigScheme.ED25519)
    paths, evidence = variants(root / f"models{n}", owner, 2 * registrations)
    net.start()
    try:
        gw = GatewayClient(net.gateway_url)
        ml = MlServiceClient(net.nodes[0].ml_url)
        # blocks per second while idle
        start_height, started = net.height(0), time.monotonic()
        time.sleep(window)
        blocks_per_s = (net.height(0) - start_height) / (time.monotonic() - started)
        # commit latency of signed transfers, one at a time
        payer = crypto.read_key_file(FUNDED)
        chain_id = gw.status()["chain_id"]
        latencies = []
        for _ in range(transfers):
            nonce = gw.account(payer.account)["next_nonce"]
            tx = crypto.sign_tx(
                TxTransfer(payer.account, owner.account, 1, 0, nonce), payer, chain_id
            )
            sent = time.monotonic()
            status = gw.wait_for_tx(gw.submit(tx), timeout=60)
            assert status.status == "committed", status
            latencies.append(time.monotonic() - sent)
        # committed ML-DSA-65 transfers per second, pre-signed, posted in batches
        transfers_per_s = bulk_transfers(gw, payer, chain_id, bulk)
        # registrations per second: all submitted at once, files uploaded to validator 0 only
        evidence_hash = EvidenceHash.from_hex(ml.upload_evidence(evidence))
        uploaded = [Aid.from_hex(ml.upload_artefact(p)) for p in paths]
        floor_aids, aids = uploaded[:registrations], uploaded[registrations:]
        verify_started = time.monotonic()  # the floor: validator 0's service alone, cold
        profile = {f: getattr(PROFILE, f) for f in PROFILE.__struct_fields__}
        for aid in floor_aids:
            body = {
                "aid": str(aid), "scheme_id": "multi_factor_v2", "owner": str(owner.account),
                "evidence_hash": str(evidence_hash), "wm_profile": profile,
            }  # fmt: skip
            httpx.post(f"{net.nodes[0].ml_url}/verify", json=body, timeout=120).raise_for_status()
        verify_rate = len(floor_aids) / (time.monotonic() - verify_started)
        sketches = {  # declared in each registration; computed here, as an owner would
            aid: artefact_sketch(path) for aid, path in zip(uploaded, paths, strict=True)
        }
        submitted = time.monotonic()
        hashes = [
            gw.register_signed(owner, aid, evidence_hash, PROFILE, sketch=sketches[aid])
            for aid in aids
        ]
        statuses = [gw.wait_for_tx(h, timeout=300) for h in hashes]
        registrations_per_s = len(aids) / (time.monotonic() - submitted)
        committed = sum(s.status == "committed" for s in statuses)
        gw.close()
        ml.close()
    finally:
        net.stop()
    latencies.sort()
    return {
        "validators": n,
        "blocks_per_s": blocks_per_s,
        "blocks_ratio_to_floor": blocks_per_s * COMMIT_SECS,
        "commit_latency_median_s": statistics.median(latencies),
        "commit_latency_p90_s": latencies[int(0.9 * (len(latencies) - 1))],
        "latency_ratio_to_timeout_commit": statistics.median(latencies) / COMMIT_SECS,
        "transfers_per_s": transfers_per_s,
        "transfers_ratio_to_verify_floor": transfers_per_s / MLDSA_FLOOR[0],
        "registrations_per_s": registrations_per_s,
        "registrations_committed": committed,
        "verify_floor_per_s": verify_rate,
        "registrations_ratio_to_verify_floor": registrations_per_s / verify_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--quick", action="store_true", help="short window, few txs")
    parser.add_argument("--out", type=Path, default=Path("data/bench/cometbft"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    window, transfers, registrations = (5.0, 3, 3) if args.quick else (30.0, 20, 10)
    bulk = 200 if args.quick else 2000
    MLDSA_FLOOR[0] = crypto.verify_rate(SigScheme.ML_DSA_65)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.validators:
            print(f"{n} validator(s): starting ...", flush=True)
            row = measure(n, window, transfers, registrations, Path(tmp), bulk)
            rows.append(row)
            print("  " + ", ".join(f"{k}={v:.3g}" for k, v in row.items()), flush=True)
    with (args.out / "cometbft.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    labels = [f"{int(r['validators'])} val." for r in rows]
    for ax, key, title in zip(
        axes,
        ("blocks_per_s", "commit_latency_median_s", "transfers_per_s", "registrations_per_s"),
        (
            "blocks/s (floor 1/timeout_commit = 1)",
            "commit latency, median (s)",
            "ML-DSA-65 transfers/s",
            "registrations/s",
        ),
        strict=True,
    ):
        ax.bar(labels, [r[key] for r in rows], color="#4c72b0")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "cometbft.png", dpi=120)
    print(f"wrote {args.out / 'cometbft.csv'} and {args.out / 'cometbft.png'}")


if __name__ == "__main__":
    main()
