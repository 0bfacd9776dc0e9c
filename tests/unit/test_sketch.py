"""Registration's cost does not grow with the chain: the function sketch
(`ml_service/watermark/sketch.py`) and the chain's sketch index (`state.index_sketch`,
`state.nearest_registrations`).

The sketch must not let a copy hide (a function-preserving rewrite keeps it; the test suite's
fine-tunes and overwrites stay far nearer than unrelated models), must not split validators
(thread count, float32 rounding), and a declared sketch must be the artefact's. The index must
find the nearest earlier registrations with reads that do not grow per registration.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest
import torch

from authchain.chain import codec
from authchain.chain.state import (
    ARTEFACT_PREFIX,
    SKETCH_CHUNK,
    StateView,
    index_sketch,
    nearest_registrations,
)
from authchain.chain.types import AccountId, Aid, ArtefactMetadata, EvidenceHash, EvidenceRef
from authchain.ml_service import attacks
from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import VerifyRequest
from authchain.ml_service.verifier import Verifier
from authchain.ml_service.watermark.sketch import (
    SKETCH_BITS,
    hamming,
    mismatched_bits,
    model_sketch,
    sketch_values,
)
from authchain.wire import SKETCH_BYTES
from tests.support.chain import PROFILE, CountingState
from tests.support.models import SEED_PROFILE, TrainedModel

# --- the sketch --------------------------------------------------------------------------------


def sketch_of(model: TrainedModel) -> bytes:
    loaded = load_artefact(model.artefact)
    return model_sketch(loaded.model, tuple(loaded.arch.input_shape), loaded.config.num_classes)


@pytest.mark.parametrize("rewrite", ["permute", "rescale", "flip_signs", "fold_batchnorm"])
def test_a_function_preserving_rewrite_keeps_the_sketch(
    watermarked: TrainedModel, rewrite: str
) -> None:
    loaded = load_artefact(watermarked.artefact)
    shape, classes = tuple(loaded.arch.input_shape), loaded.config.num_classes
    copy = attacks.REWRITES[rewrite](loaded.model, torch.Generator().manual_seed(11))
    changed = sum(
        not torch.equal(a, b)
        for a, b in zip(loaded.model.state_dict().values(), copy.state_dict().values(), strict=True)
    )
    assert changed >= 10  # the weights really moved
    declared = model_sketch(loaded.model, shape, classes)
    assert mismatched_bits(sketch_values(copy, shape, classes), declared) == []


def test_copies_are_nearer_than_unrelated_models(
    watermarked: TrainedModel, overwrite: TrainedModel, own_finetune: TrainedModel,
    clean: TrainedModel,
) -> None:  # fmt: skip
    original = sketch_of(watermarked)
    copies = [hamming(original, sketch_of(m)) for m in (overwrite, own_finetune)]
    unrelated = hamming(original, sketch_of(clean))
    # among 100,000 random sketches the nearest differs in ~0.43 of the bits (4.3 sigma)
    assert all(d < 0.41 * SKETCH_BITS for d in copies), copies
    assert 0.43 * SKETCH_BITS < unrelated < 0.57 * SKETCH_BITS, unrelated


def test_the_sketch_is_the_same_at_any_thread_count(watermarked: TrainedModel) -> None:
    loaded = load_artefact(watermarked.artefact)
    shape, classes = tuple(loaded.arch.input_shape), loaded.config.num_classes
    threads = torch.get_num_threads()
    try:
        seen = []
        for n in (1, 2):
            torch.set_num_threads(n)
            seen.append(model_sketch(loaded.model, shape, classes))
    finally:
        torch.set_num_threads(threads)
    assert seen[0] == seen[1]


def test_a_bit_on_zero_is_not_decided_and_every_other_bit_is() -> None:
    values = torch.linspace(-1.0, 1.0, SKETCH_BITS, dtype=torch.float64)
    values[5] = 1e-6  # within the margin of zero: either sign is accepted
    honest = np.packbits((values > 0).numpy()).tobytes()
    assert mismatched_bits(values, honest) == []
    bits = np.unpackbits(np.frombuffer(honest, dtype=np.uint8))
    bits[[5, 7, SKETCH_BITS - 1]] ^= 1
    assert mismatched_bits(values, np.packbits(bits).tobytes()) == [7, SKETCH_BITS - 1]
    with pytest.raises(ValueError, match="bytes"):
        mismatched_bits(values, honest[:-1])


def test_v_auth_refuses_a_sketch_that_is_not_the_artefacts(
    watermarked: TrainedModel, clean: TrainedModel, tmp_path: Path
) -> None:
    root = tmp_path
    store = FilesystemStore(root / "models", root / "evidence")
    (store.model_root / f"{watermarked.aid}.safetensors").write_bytes(watermarked.artefact_bytes)
    (store.evidence_root / f"{watermarked.evidence_hash}.json").write_bytes(
        watermarked.evidence_bytes
    )
    verifier = Verifier(store)
    assert verifier.sketch(watermarked.aid) == watermarked.sketch

    def claim(sketch: str | None) -> VerifyRequest:
        return VerifyRequest.model_validate({
            "aid": watermarked.aid, "scheme_id": "multi_factor_v2",
            "evidence_hash": watermarked.evidence_hash, "wm_profile": dict(SEED_PROFILE),
            "owner": watermarked.owner, "sketch": sketch,
        })  # fmt: skip

    assert verifier.check(claim(watermarked.sketch.hex())).ok
    for wrong in ("", sketch_of(clean).hex()):  # none declared; another model's
        outcome = verifier.check(claim(wrong))
        assert (outcome.ok, outcome.reason) == (False, "sketch_mismatch")
        assert outcome.detail is not None and "GET /artefacts/" in outcome.detail
    assert verifier.check(claim(None)).ok  # a dispute's internal check declares none


# --- the index ---------------------------------------------------------------------------------


def ref(sketch: bytes, classes: int = 10) -> EvidenceRef:
    return EvidenceRef(
        "multi_factor_v2", EvidenceHash(secrets.token_bytes(32)), PROFILE, num_classes=classes,
        sketch=sketch,
    )  # fmt: skip


def register(view: StateView, aid: Aid, evidence: EvidenceRef) -> None:
    meta = ArtefactMetadata(aid, AccountId(b"\x01" * 32), evidence, 1)
    view.put(ARTEFACT_PREFIX + aid, codec.encode(meta))
    index_sketch(view, aid, evidence)


def flipped(sketch: bytes, count: int, rng: np.random.Generator) -> bytes:
    bits = np.unpackbits(np.frombuffer(sketch, dtype=np.uint8))
    bits[rng.choice(SKETCH_BITS, size=count, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def test_the_nearest_registration_is_found_whatever_the_order_and_chunking() -> None:
    rng = np.random.default_rng(1)
    query = rng.bytes(SKETCH_BYTES)
    parent = Aid(b"\xee" * 32)
    entries = [(Aid(secrets.token_bytes(32)), ref(rng.bytes(SKETCH_BYTES))) for _ in range(600)]
    entries.insert(317, (parent, ref(flipped(query, 400, rng))))  # a copy at 0.39: the nearest
    entries.append((Aid(b"\x00" * 32), ref(query, classes=7)))  # identical, other classes
    entries.append((Aid(b"\x01" * 32), ref(b"")))  # declared none: not indexed
    found = []
    for order in (entries, entries[::-1]):
        view = StateView({})
        for aid, evidence in order:
            register(view, aid, evidence)
        nearest = nearest_registrations(view, ref(query), exclude=Aid(b"\x02" * 32), limit=1)
        found.append([m.aid for m in nearest])
        three = nearest_registrations(view, ref(query), exclude=parent, limit=3)
        assert len(three) == 3 and parent not in [m.aid for m in three]
    assert found == [[parent], [parent]]
    assert len(entries) > 2 * SKETCH_CHUNK  # the records span several index entries


def test_ties_are_broken_by_aid() -> None:
    view = StateView({})
    sketch = bytes(SKETCH_BYTES)
    for byte in (9, 3, 7, 5):
        register(view, Aid(bytes([byte]) * 32), ref(sketch))
    nearest = nearest_registrations(view, ref(sketch), exclude=Aid(b"\x05" * 32), limit=2)
    assert [m.aid for m in nearest] == [Aid(b"\x03" * 32), Aid(b"\x07" * 32)]
    assert nearest_registrations(view, ref(b""), exclude=Aid(b"\x05" * 32)) == []


def test_finding_the_nearest_reads_one_entry_per_chunk_not_per_registration() -> None:
    rng = np.random.default_rng(2)
    counts = []
    for registrations in (SKETCH_CHUNK, 8 * SKETCH_CHUNK):
        view = StateView({})
        for _ in range(registrations):
            register(view, Aid(secrets.token_bytes(32)), ref(rng.bytes(SKETCH_BYTES)))
        committed = CountingState({k: v for k, v in view.writes.items() if v is not None})
        assert len(nearest_registrations(StateView(committed), ref(rng.bytes(SKETCH_BYTES)),
                                         exclude=Aid(b"\x02" * 32))) == 1  # fmt: skip
        counts.append(committed.reads)
    # the count, one index entry per SKETCH_CHUNK registrations, and the nearest's record
    assert counts == [1 + 1 + 1, 1 + 8 + 1]
