"""What registering one model costs as the chain grows: the derivative check against 1 to
100,000 earlier registrations, as a ratio to a plain verification.

    .venv/bin/python benchmarks/derivative.py                       # 1, 100, 10k, 100k
    .venv/bin/python benchmarks/derivative.py --counts 1 100 --repeats 1   # quick

A registration's claim is checked exactly against the `DERIVATIVE_NEIGHBOURS` earlier
registrations with the nearest function sketches, which the chain finds in its sketch index
(`state.nearest_registrations`); the rest is the owners' job, with disputes. Each row times
what a validator does for one claim: the selection from the parent state (`block_claims`, on
the state the application keeps) and V_auth on a cold verifier (nothing cached), in one
process. The floor is the same claim on an empty chain, measured in the same run; each row is
the median of --repeats.

The candidate is a trained tiny SmallResNet. The earlier registrations are synthetic: random
sketches (models trained apart differ in about half their bits) pointing at --evidence-files
real evidence files for random keys, plus one planted parent whose sketch differs from the
candidate's in --parent-bits bits (the test suite's copies differ in 155 to 358 of 1024), to
show it is still the nearest at every size (`parent_found`). Writes CSV and a PNG to --out.
Nothing is asserted but that every claim passes.
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
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.progress import track

from authchain.chain import codec
from authchain.chain.ml_client.http import get_verify_request
from authchain.chain.state import ARTEFACT_PREFIX, DERIVATIVE_NEIGHBOURS, StateView, index_sketch
from authchain.chain.types import (
    AccountId,
    Aid,
    ArtefactMetadata,
    EvidenceHash,
    EvidenceRef,
    TxRegisterModel,
    WmProfile,
)
from authchain.chain.validation.ml import ArtefactClaim
from authchain.chain.validation.pipeline import block_claims
from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.models import get_architecture
from authchain.ml_service.owner import train_model
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import VerifyRequest
from authchain.ml_service.verifier import Verifier
from authchain.ml_service.watermark.embed import EmbedSpec, make_evidence, new_key_material
from authchain.ml_service.watermark.sketch import artefact_sketch
from authchain.wire import SKETCH_BYTES

OWNER = b"\xa1" * 32
PROFILE = WmProfile(0.9, 0.2, -0.05, 0.05)


def flip_bits(sketch: bytes, count: int, rng: np.random.Generator) -> bytes:
    bits = np.unpackbits(np.frombuffer(sketch, dtype=np.uint8))
    bits[rng.choice(len(bits), size=count, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def earlier_state(
    count: int, evidence: list[str], parent_sketch: bytes, rng: np.random.Generator
) -> tuple[dict[bytes, bytes], Aid]:
    """`count` registrations (one of them the planted parent), as the application holds them."""
    view = StateView({})
    parent = Aid(secrets.token_bytes(32))
    for i in track(range(count), description=f"{count} registrations", transient=True):
        aid = parent if i == count // 2 else Aid(secrets.token_bytes(32))
        sketch = parent_sketch if aid == parent else rng.bytes(SKETCH_BYTES)
        ref = EvidenceRef(
            "multi_factor_v2", EvidenceHash.from_hex(evidence[i % len(evidence)]), PROFILE,
            sketch=sketch,
        )  # fmt: skip
        owner = AccountId(secrets.token_bytes(32))
        view.put(ARTEFACT_PREFIX + aid, codec.encode(ArtefactMetadata(aid, owner, ref, 1)))
        index_sketch(view, aid, ref)
    return {k: v for k, v in view.writes.items() if v is not None}, parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 100, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--evidence-files", type=int, default=64)
    parser.add_argument("--parent-bits", type=int, default=358)
    parser.add_argument("--out", type=Path, default=Path("data/bench/derivative"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("training the candidate (tiny SmallResNet) ...")
        result = train_model(
            OWNER, root / "candidate", tiny=True, epochs=None, seed=0, watermark=True,
            base=None, spec=EmbedSpec(),
        )  # fmt: skip
        store = FilesystemStore(root / "models", root / "evidence")
        (store.model_root / f"{result.aid}.safetensors").write_bytes(result.artefact.read_bytes())
        (store.evidence_root / f"{result.evidence_hash}.json").write_bytes(
            result.evidence.read_bytes()
        )
        sketch = artefact_sketch(result.artefact)
        candidate = TxRegisterModel(
            AccountId(OWNER), Aid.from_hex(result.aid),
            EvidenceRef("multi_factor_v2", EvidenceHash.from_hex(result.evidence_hash), PROFILE,
                        sketch=sketch),
            fee=0, nonce=0,
        )  # fmt: skip

        loaded = load_artefact(result.artefact)
        arch = get_architecture("small_resnet")
        evidence = []
        for _ in track(range(args.evidence_files), description="earlier evidence files"):
            key = new_key_material(
                secrets.token_bytes(32), arch, 10, EmbedSpec(), model=loaded.model
            )
            data = make_evidence(loaded.model, key, arch, EmbedSpec()).to_bytes()
            digest = blake3.blake3(data).hexdigest()
            (store.evidence_root / f"{digest}.json").write_bytes(data)
            evidence.append(digest)

        def one_claim(state: dict[bytes, bytes]) -> tuple[float, float, ArtefactClaim]:
            """Selection and cold verification of the candidate's claim on `state`."""
            started = time.perf_counter()
            (claim,) = block_claims(StateView(state), [candidate]).values()
            selected = time.perf_counter()
            assert isinstance(claim, ArtefactClaim)
            outcome = Verifier(store).check(VerifyRequest.model_validate(get_verify_request(claim)))
            assert outcome.ok, outcome  # random owners' keys: nothing is carried
            return selected - started, time.perf_counter() - selected, claim

        def timed(state: dict[bytes, bytes]) -> tuple[float, float, ArtefactClaim]:
            runs = [one_claim(state) for _ in range(args.repeats)]
            select = statistics.median(r[0] for r in runs)
            return select, statistics.median(r[1] for r in runs), runs[0][2]

        parent_sketch = flip_bits(sketch, args.parent_bits, rng)
        select0, verify0, _ = timed({})
        plain = select0 + verify0
        fields = ["earlier", "checked", "parent_found", "select_ms", "verify_ms", "ratio"]
        rows = [dict(zip(fields, [0, 0, "", round(select0 * 1e3, 2), round(verify0 * 1e3, 1),
                                  1.0], strict=True))]  # fmt: skip
        print(f"{'earlier':>8} {'checked':>8} {'parent':>7} {'select_ms':>10} {'verify_ms':>10}"
              f" {'ratio':>6}")  # fmt: skip
        print(f"{0:>8} {0:>8} {'':>7} {select0 * 1e3:>10.2f} {verify0 * 1e3:>10.1f} {1.0:>6.2f}")
        for n in args.counts:
            state, parent = earlier_state(n, evidence, parent_sketch, rng)
            select, verify, claim = timed(state)
            found = parent in {r.aid for r in claim.registered}
            ratio = (select + verify) / plain
            rows.append(dict(zip(fields, [
                n, len(claim.registered), found, round(select * 1e3, 2), round(verify * 1e3, 1),
                round(ratio, 2),
            ], strict=True)))  # fmt: skip
            print(f"{n:>8} {len(claim.registered):>8} {found!s:>7} {select * 1e3:>10.2f} "
                  f"{verify * 1e3:>10.1f} {ratio:>6.2f}")  # fmt: skip

    with (args.out / "derivative.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx([r["earlier"] for r in rows[1:]], [r["ratio"] for r in rows[1:]], "o-",
                label="registration (select + verify)")  # fmt: skip
    ax.axhline(2.0, color="tab:red", linestyle="--", label="budget: 2x a plain verification")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("earlier registrations (same classes)")
    ax.set_ylabel("cost / plain verification")
    ax.set_ylim(0, max(2.5, max(float(str(r["ratio"])) for r in rows) * 1.1))
    ax.set_title(f"Derivative check: {DERIVATIVE_NEIGHBOURS} nearest by sketch (tiny model, CPU)")
    ax.legend(loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "derivative.png", dpi=120)
    print(f"wrote {args.out}/derivative.csv and derivative.png")


if __name__ == "__main__":
    main()
