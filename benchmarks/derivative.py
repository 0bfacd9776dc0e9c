"""How the cost of verifying one claim grows with the registrations it is checked against.

    .venv/bin/python benchmarks/derivative.py                   # 1, 10, 100 earlier registrations
    .venv/bin/python benchmarks/derivative.py --counts 1 10 100 1000

Derivative detection (V_auth) runs every earlier registration's trigger set through the
candidate in the claim's own forward pass (fp32, float64 for the rows fp32 cannot decide), and
reads every earlier signature from its weights. The floor is a plain verification of the same
claim with no earlier registrations, measured in the same run; each row is the median of
--repeats cold verifications (a fresh verifier: nothing cached) as a ratio to it. Models are
the tiny SmallResNet; the earlier registrations are evidence files for random owners (what is
checked is the candidate, so the earlier models themselves are not needed). Writes CSV and a
PNG to --out. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import blake3
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.models import get_architecture
from authchain.ml_service.owner import train_model
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import VerifyRequest
from authchain.ml_service.verifier import Verifier
from authchain.ml_service.watermark.embed import EmbedSpec, make_evidence, new_key_material

OWNER = b"\xa1" * 32
PROFILE = {"tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -0.05, "logit_band_high": 0.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("data/bench/derivative"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("training the candidate (tiny SmallResNet) ...")
        result = train_model(
            OWNER, root / "candidate", tiny=True, epochs=None, seed=0, watermark=True,
            base=None, spec=EmbedSpec(),
        )  # fmt: skip
        store = FilesystemStore(root / "models", root / "evidence")
        artefact = result.artefact.read_bytes()
        (store.model_root / f"{result.aid}.safetensors").write_bytes(artefact)
        evidence = result.evidence.read_bytes()
        (store.evidence_root / f"{result.evidence_hash}.json").write_bytes(evidence)

        loaded = load_artefact(result.artefact)
        arch = get_architecture("small_resnet")
        print(f"writing {max(args.counts)} earlier registrations' evidence ...")
        registered = []
        for _ in range(max(args.counts)):
            key = new_key_material(
                secrets.token_bytes(32), arch, 10, EmbedSpec(), model=loaded.model
            )
            data = make_evidence(loaded.model, key, arch, EmbedSpec()).to_bytes()
            digest = blake3.blake3(data).hexdigest()
            (store.evidence_root / f"{digest}.json").write_bytes(data)
            registered.append(
                {"aid": secrets.token_hex(32), "owner": key.owner.hex(), "evidence_hash": digest}
            )

        def request(n: int) -> VerifyRequest:
            return VerifyRequest.model_validate({
                "aid": result.aid, "scheme_id": "multi_factor_v2",
                "evidence_hash": result.evidence_hash, "wm_profile": PROFILE,
                "owner": OWNER.hex(), "registered": registered[:n],
            })  # fmt: skip

        def cold(n: int) -> float:
            times = []
            for _ in range(args.repeats if n <= 100 else 1):
                verifier = Verifier(store)
                started = time.perf_counter()
                outcome = verifier.check(request(n))
                times.append(time.perf_counter() - started)
                assert outcome.ok, outcome  # random owners' keys: nothing is carried
            return statistics.median(times)

        plain = cold(0)
        rows = [{"earlier": 0, "seconds": round(plain, 4), "ratio": 1.0, "ms_per_earlier": ""}]
        print(f"{'earlier':>8} {'seconds':>9} {'ratio':>8} {'ms/earlier':>11}")
        print(f"{0:>8} {plain:>9.3f} {1.0:>8.1f} {'':>11}")
        for n in args.counts:
            seconds = cold(n)
            per = (seconds - plain) / n * 1000
            rows.append({
                "earlier": n, "seconds": round(seconds, 4), "ratio": round(seconds / plain, 2),
                "ms_per_earlier": round(per, 2),
            })  # fmt: skip
            print(f"{n:>8} {seconds:>9.3f} {seconds / plain:>8.1f} {per:>11.2f}")

    with (args.out / "derivative.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog([r["earlier"] for r in rows[1:]], [r["ratio"] for r in rows[1:]], "o-")
    ax.set_xlabel("earlier registrations checked")
    ax.set_ylabel("verification time / plain verification")
    ax.set_title("Derivative detection cost (tiny SmallResNet, CPU)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "derivative.png", dpi=120)
    print(f"wrote {args.out}/derivative.csv and derivative.png")


if __name__ == "__main__":
    main()
