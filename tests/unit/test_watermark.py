"""multi_factor_v2 verification with tiny models trained in this session (no HTTP here)."""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
from pathlib import Path
from typing import Any

import blake3
import pytest
import torch

from authchain.ml_service.artefact import encode_pt_artefact, load_artefact, sniff_format
from authchain.ml_service.models import SmallResNetConfig, get_architecture
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import VerifyRequest
from authchain.ml_service.verifier import Verifier
from authchain.ml_service.watermark.embed import EmbedSpec, make_evidence, new_key_material
from authchain.ml_service.watermark.evidence import (
    Evidence,
    EvidenceV2,
    KeyMaterial,
    SignatureLayer,
    parse_evidence,
)
from authchain.ml_service.watermark.verify import FactorStats, compute_carry_stats, compute_stats
from tests.support.artefacts import bad_artefacts
from tests.support.models import OTHER, SEED_PROFILE, TrainedModel


@pytest.fixture
def store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "models", tmp_path / "evidence")


def put(
    store: FilesystemStore, artefact: bytes, evidence: bytes, ext: str = "safetensors"
) -> tuple[str, str]:
    aid = blake3.blake3(artefact).hexdigest()
    ev = blake3.blake3(evidence).hexdigest()
    (store.model_root / f"{aid}.{ext}").write_bytes(artefact)
    (store.evidence_root / f"{ev}.json").write_bytes(evidence)
    return aid, ev


def request(aid: str, ev: str, owner: str | None = None, **profile: float) -> VerifyRequest:
    return VerifyRequest.model_validate(
        {
            "aid": aid,
            "scheme_id": "multi_factor_v2",
            "evidence_hash": ev,
            "wm_profile": {**SEED_PROFILE, **profile},
            "owner": owner,
        }
    )


def check(store: FilesystemStore, req: VerifyRequest, **kwargs: Any) -> Any:
    return Verifier(store, **kwargs).check(req)


def test_watermarked_model_passes_the_seed_profile(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    assert (aid, ev) == (watermarked.aid, watermarked.evidence_hash)
    outcome = check(store, request(aid, ev, watermarked.owner))
    assert outcome.ok, outcome
    assert outcome.stats.trigger_acc >= 0.9 and outcome.stats.feat_dist <= 0.2
    assert outcome.stats.logit_stat <= outcome.stats.logit_stat_error  # float64: exactly 0
    assert outcome.stats.p_value < 1e-50


def test_unwatermarked_model_fails_against_its_owners_evidence(
    store: FilesystemStore, clean: TrainedModel
) -> None:
    aid, ev = put(store, clean.artefact_bytes, clean.evidence_bytes)
    outcome = check(store, request(aid, ev, clean.owner))
    assert not outcome.ok
    assert outcome.reason == (
        "trigger_acc_below_tau_input;trigger_p_above_floor;"
        "feat_dist_above_tau_feat;feat_p_above_floor"
    )
    assert outcome.stats.trigger_acc < 0.4 and outcome.stats.feat_dist > 0.3
    assert outcome.stats.p_value > 1e-6  # what chance alone gives
    assert outcome.stats.feat_p_value > 1e-6
    # the logit factor alone proves nothing
    assert outcome.stats.logit_stat <= outcome.stats.logit_stat_error


def test_evidence_retargeted_to_another_owner_fails(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    evidence = parse_evidence(watermarked.evidence_bytes)
    forged = evidence.model_copy(update={"owner": OTHER.hex()}).to_bytes()
    aid, ev = put(store, watermarked.artefact_bytes, forged)
    outcome = check(store, request(aid, ev, OTHER.hex()))
    assert not outcome.ok
    assert "trigger_acc_below_tau_input" in outcome.reason
    assert "feat_dist_above_tau_feat" in outcome.reason


def test_evidence_of_another_owner_is_refused(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    outcome = check(store, request(aid, ev, OTHER.hex()))
    assert not outcome.ok and outcome.reason == "owner_mismatch"


def test_one_byte_change_to_the_artefact_fails_the_hash_check(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    data = bytearray(watermarked.artefact_bytes)
    data[-1] ^= 0x01
    (store.model_root / f"{aid}.safetensors").write_bytes(bytes(data))
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == "artefact_hash_mismatch"


def test_one_byte_change_to_the_evidence_fails_the_hash_check(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    (store.evidence_root / f"{ev}.json").write_bytes(watermarked.evidence_bytes + b" ")
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == "evidence_hash_mismatch"


def test_verification_is_deterministic_across_calls_and_thread_counts(
    store: FilesystemStore, watermarked: TrainedModel, clean: TrainedModel
) -> None:
    threads = torch.get_num_threads()
    try:
        for model in (watermarked, clean):
            aid, ev = put(store, model.artefact_bytes, model.evidence_bytes)
            seen: list[FactorStats] = []
            for n in (1, 2, 1, 2):
                torch.set_num_threads(n)
                outcome = check(store, request(aid, ev), model_cache_size=0, stats_cache_size=0)
                seen.append(outcome.stats)
            assert all(s == seen[0] for s in seen), seen
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("scheme", ["multi_factor_v1", "multi_factor_v2"])
def test_key_material_is_fixed_by_owner_and_seed(scheme: str) -> None:
    layers = (("stem.0.weight", 3), ("layer1.conv1.weight", 5))

    def key(owner: bytes, seed: bytes) -> KeyMaterial:
        return KeyMaterial(owner, seed, (3, 32, 32), 10, 16, 8, 4, scheme, layers)

    a, b = key(b"\x01" * 32, b"\x02" * 32), key(b"\x01" * 32, b"\x02" * 32)
    assert torch.equal(a.trigger_inputs(), b.trigger_inputs())
    assert torch.equal(a.trigger_labels(), b.trigger_labels())
    assert torch.equal(a.projection(5), b.projection(5))
    for ka, kb in zip(a.signature_keys(), b.signature_keys(), strict=True):
        pairs = zip((ka.a, ka.c, ka.e, ka.bits), (kb.a, kb.c, kb.e, kb.bits), strict=True)
        assert all(torch.equal(x, y) for x, y in pairs)
    other = key(b"\x03" * 32, b"\x02" * 32)
    assert not torch.equal(a.trigger_inputs(), other.trigger_inputs())
    assert not torch.equal(a.signature(), other.signature()) or not torch.equal(
        a.trigger_labels(), other.trigger_labels()
    )
    # golden values: the derivation must never drift between versions (consensus depends on it)
    labels, bits, direction = GOLDEN[scheme]
    assert a.trigger_labels()[:8].tolist() == labels
    assert a.signature().tolist() == bits
    if direction:
        assert [round(v, 12) for v in a.signature_keys()[1].a[0, :4].tolist()] == direction


GOLDEN: dict[str, tuple[list[int], list[float], list[float]]] = {
    "multi_factor_v1": ([3, 3, 1, 4, 7, 0, 7, 3], [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0], []),
    "multi_factor_v2": (
        [3, 2, 7, 9, 4, 4, 2, 9],
        [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0],
        [0.280349696521, -0.220415856224, -0.998820300214, 0.850873804186],
    ),
}


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_pickle_payload_pt_is_refused_without_running(
    store: FilesystemStore, watermarked: TrainedModel, tmp_path: Path, container: str
) -> None:
    marker = tmp_path / "pwned"
    if container == "torch_zip":
        buffer = io.BytesIO()
        torch.save({"state_dict": _Payload(marker)}, buffer)
        data = buffer.getvalue()
    else:
        data = pickle.dumps(_Payload(marker), protocol=2)
    assert sniff_format(data) == "pt"
    aid, ev = put(store, data, watermarked.evidence_bytes, ext="pt")
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == "unsafe_artefact", outcome
    assert not marker.exists()


def test_pt_state_dict_is_accepted(store: FilesystemStore, watermarked: TrainedModel) -> None:
    loaded = load_artefact(watermarked.artefact)
    data = encode_pt_artefact(loaded.model, loaded.arch, loaded.config)
    aid, ev = put(store, data, watermarked.evidence_bytes, ext="pt")
    outcome = check(store, request(aid, ev))
    assert outcome.ok, outcome


@pytest.mark.parametrize(
    "case",
    ["truncated", "random", "no_arch", "unknown_arch", "wrong_shapes", "bad_config",
     "missing_tensor", "truncated_pt"],
)  # fmt: skip
def test_bad_artefacts_get_a_specific_reason(
    store: FilesystemStore, watermarked: TrainedModel, case: str
) -> None:
    data, ext, reason = bad_artefacts(watermarked.artefact_bytes)[case]
    aid, ev = put(store, data, watermarked.evidence_bytes, ext=ext)
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == reason, outcome


def test_evidence_for_another_architecture_is_a_mismatch(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    evidence = parse_evidence(watermarked.evidence_bytes)
    assert isinstance(evidence, EvidenceV2)
    layers = (SignatureLayer(name="nope.weight", bits=evidence.signature_bits),)
    other_layer = evidence.model_copy(update={"signature_layers": layers}).to_bytes()
    aid, ev = put(store, watermarked.artefact_bytes, other_layer)
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == "evidence_model_mismatch"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(owner="xyz"), "owner"),
        (lambda d: d.update(reference_logits=[[0.0]]), "evidence"),
        (lambda d: d.update(trigger_count=0), "trigger_count"),
        (lambda d: d.pop("key_seed"), "key_seed"),
    ],
)
def test_corrupt_evidence_is_refused(
    store: FilesystemStore, watermarked: TrainedModel, mutate: Any, field: str
) -> None:
    data = json.loads(watermarked.evidence_bytes)
    mutate(data)
    aid, ev = put(store, watermarked.artefact_bytes, json.dumps(data).encode())
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == "corrupt_evidence"
    assert field in outcome.detail
    for junk in (b"", b"{", b"\xff\xfe"):
        aid, ev = put(store, watermarked.artefact_bytes, junk)
        assert check(store, request(aid, ev)).reason == "corrupt_evidence"


def test_missing_files_and_unknown_scheme(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    assert check(store, request("bb" * 32, ev)).reason == "artefact_not_found"
    assert check(store, request(aid, "cc" * 32)).reason == "evidence_not_found"
    unknown = request(aid, ev).model_copy(update={"scheme_id": "rot13_v0"})
    assert check(store, unknown).reason == "unknown_scheme"


def test_thresholds_are_applied_to_cached_statistics(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    verifier = Verifier(store)
    first = verifier.check(request(aid, ev))
    strict = verifier.check(request(aid, ev, logit_band_low=0.01, logit_band_high=0.02))
    assert first.ok and not first.cached
    assert strict.cached and not strict.ok and strict.reason == "logit_stat_outside_band"


def test_evidence_round_trips_exactly(watermarked: TrainedModel) -> None:
    evidence = parse_evidence(watermarked.evidence_bytes)
    assert evidence.to_bytes() == watermarked.evidence_bytes
    assert isinstance(evidence, Evidence)
    model = load_artefact(watermarked.artefact).model
    assert compute_stats(model, evidence, precision="float64").logit_stat == 0.0


def test_tiny_config_fits_registry() -> None:
    arch = get_architecture("small_resnet")
    assert arch.parse_config({"stem_width": 8, "widths": [16, 32, 32]}) == SmallResNetConfig.tiny()


def test_sniff_format_reads_the_safetensors_header() -> None:
    # a header length whose first byte is 0x80 must not look like a pickle
    assert sniff_format((0x80).to_bytes(8, "little") + b'{"a":1}') == "safetensors"
    assert sniff_format(b"PK\x03\x04rest") == "pt"
    assert sniff_format(pickle.dumps({"a": 1}, protocol=2)) == "pt"


# --- the chain's floors, applied by the service (V_auth) -------------------------------------


def evidence_with(model: TrainedModel, **spec: int) -> bytes:
    """Evidence for `model` under its owner's training key, at another strength."""
    loaded = load_artefact(model.artefact)
    original = parse_evidence(model.evidence_bytes)
    embed = EmbedSpec(**spec)  # type: ignore[arg-type]
    key = new_key_material(
        bytes.fromhex(model.owner),
        loaded.arch,
        10,
        embed,
        bytes.fromhex(original.key_seed),
        loaded.model,
    )
    return make_evidence(loaded.model, key, loaded.arch, embed).to_bytes()


def floors_request(aid: str, ev: str, floors: dict[str, Any], **extra: Any) -> VerifyRequest:
    body = request(aid, ev).model_dump()
    return VerifyRequest.model_validate({**body, "floors": floors, **extra})


def test_invalid_evidence_below_min_trigger_count(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    # the model really carries these 16 triggers (a prefix of its 100): only the floor refuses
    aid, ev = put(store, watermarked.artefact_bytes, evidence_with(watermarked, trigger_count=16))
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == "evidence_below_min_strength"
    assert "trigger_count 16" in outcome.detail


def test_invalid_evidence_below_min_signature_bits(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, evidence_with(watermarked, signature_bits=8))
    outcome = check(store, request(aid, ev))
    assert not outcome.ok and outcome.reason == "evidence_below_min_strength"
    assert "signature_bits 8" in outcome.detail


def test_invalid_trigger_p_above_the_floor(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    # 100 triggers over 10 classes can never reach 2^-400, however good the model
    outcome = check(store, floors_request(aid, ev, {"trigger_p_log2": 400}))
    assert not outcome.ok and outcome.reason == "trigger_p_above_floor", outcome
    assert check(store, request(aid, ev)).ok  # the same model at the default floors


def test_invalid_feature_p_above_the_floor(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    # the owner's own key, read from the first layer alone (24 kernels, 3/4 of its 293 bits
    # embedded): about 2^-60, short of a 2^-100 floor
    evidence = parse_evidence(watermarked.evidence_bytes)
    assert isinstance(evidence, EvidenceV2)
    first = evidence.signature_layers[0]
    one_layer = evidence.model_copy(update={"signature_layers": (first,),
                                            "signature_bits": first.bits})  # fmt: skip
    aid, ev = put(store, watermarked.artefact_bytes, one_layer.to_bytes())
    claim = {"signature_bits": first.bits, "wm_profile": {**SEED_PROFILE, "tau_feat": 0.4}}
    floors = {"min_signature_bits": 64, "feature_p_log2": 100}
    outcome = check(store, floors_request(aid, ev, floors, **claim))
    assert not outcome.ok and outcome.reason == "feat_p_above_floor", outcome
    assert outcome.stats is not None and outcome.stats.feat_matches > first.bits * 0.6
    assert check(store, floors_request(aid, ev, {"min_signature_bits": 64}, **claim)).ok


def test_invalid_logit_band_above_the_floor(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    outcome = check(store, request(aid, ev, logit_band_low=-0.5, logit_band_high=0.5))
    assert not outcome.ok and outcome.reason == "logit_band_above_floor"


def test_evidence_must_have_the_strength_the_claim_states(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    aid, ev = put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    base = request(aid, ev).model_dump()
    for field, value in (("trigger_count", 200), ("signature_bits", 64), ("num_classes", 3)):
        outcome = check(store, VerifyRequest.model_validate({**base, field: value}))
        assert not outcome.ok and outcome.reason == "evidence_claim_mismatch"
        assert field in outcome.detail
    claimed = {"trigger_count": 100, "signature_bits": 2048, "num_classes": 10}
    assert check(store, VerifyRequest.model_validate({**base, **claimed})).ok


def test_4096_triggers_get_a_definitive_answer_with_finite_p_values(
    store: FilesystemStore, watermarked: TrainedModel
) -> None:
    # was: OverflowError in the p-value -> 500 -> "unavailable" forever (a poison tx)
    aid, ev = put(store, watermarked.artefact_bytes, evidence_with(watermarked, trigger_count=4096))
    outcome = check(store, request(aid, ev))
    assert outcome.stats is not None and outcome.stats.trigger_count == 4096
    assert isinstance(outcome.stats.p_value, float)
    assert -1e6 < outcome.stats.log2_p_value <= 0
    assert not outcome.ok and "trigger_acc_below_tau_input" in outcome.reason


# --- derivative detection: the first registrant owns the model's lineage -------------------


def registered(*models: TrainedModel) -> list[dict[str, str]]:
    return [{"aid": m.aid, "owner": m.owner, "evidence_hash": m.evidence_hash} for m in models]


def derivative_request(candidate: TrainedModel, prior: list[dict[str, str]]) -> VerifyRequest:
    body = request(candidate.aid, candidate.evidence_hash, candidate.owner).model_dump()
    return VerifyRequest.model_validate({**body, "registered": prior})


def test_overwritten_model_carries_the_registered_owners_watermark(
    store: FilesystemStore, watermarked: TrainedModel, overwrite: TrainedModel
) -> None:
    put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    put(store, overwrite.artefact_bytes, overwrite.evidence_bytes)
    alone = check(store, derivative_request(overwrite, []))
    assert alone.ok, alone  # the thief's own watermark passes every floor ...
    outcome = check(store, derivative_request(overwrite, registered(watermarked)))
    assert not outcome.ok and outcome.reason == "carries_registered_watermark"  # ... but
    assert watermarked.aid in outcome.detail and watermarked.owner in outcome.detail


def test_owners_own_fine_tune_passes_with_its_lineage(
    store: FilesystemStore, watermarked: TrainedModel, own_finetune: TrainedModel
) -> None:
    put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    put(store, own_finetune.artefact_bytes, own_finetune.evidence_bytes)
    outcome = check(store, derivative_request(own_finetune, registered(watermarked)))
    assert outcome.ok, outcome
    assert outcome.lineage == (watermarked.aid,)


def test_unrelated_registrations_are_not_lineage(
    store: FilesystemStore, watermarked: TrainedModel, clean: TrainedModel
) -> None:
    put(store, watermarked.artefact_bytes, watermarked.evidence_bytes)
    put(store, clean.artefact_bytes, clean.evidence_bytes)
    outcome = check(store, derivative_request(watermarked, registered(clean)))
    assert outcome.ok and outcome.lineage == ()


def test_the_derivative_verdict_does_not_depend_on_the_order_of_registrations(
    store: FilesystemStore,
    watermarked: TrainedModel,
    clean: TrainedModel,
    overwrite: TrainedModel,
    own_finetune: TrainedModel,
) -> None:
    for m in (watermarked, clean, overwrite, own_finetune):
        put(store, m.artefact_bytes, m.evidence_bytes)
    priors = registered(watermarked, clean, own_finetune)
    outcomes = []
    for order in itertools.permutations(priors):
        # a fresh verifier each time: nothing cached from another order
        req = derivative_request(overwrite, list(order))
        outcomes.append(check(store, req, stats_cache_size=0))
    first = outcomes[0]
    assert first.reason == "carries_registered_watermark"
    verdicts = {(o.ok, o.reason, o.detail, o.lineage) for o in outcomes}
    assert verdicts == {(first.ok, first.reason, first.detail, first.lineage)}
    finetune_outcomes = {
        check(store, derivative_request(own_finetune, list(order))).lineage
        for order in itertools.permutations(registered(watermarked, clean))
    }
    assert finetune_outcomes == {(watermarked.aid,)}


def test_a_missing_earlier_evidence_file_is_unavailable_not_a_pass(
    store: FilesystemStore, watermarked: TrainedModel, overwrite: TrainedModel
) -> None:
    put(store, overwrite.artefact_bytes, overwrite.evidence_bytes)  # the owner's evidence: absent
    outcome = check(store, derivative_request(overwrite, registered(watermarked)))
    assert not outcome.ok and outcome.reason == "evidence_not_found"
    assert watermarked.aid in outcome.detail


def test_derivative_statistics_do_not_depend_on_the_batch_they_run_in(
    watermarked: TrainedModel, clean: TrainedModel, overwrite: TrainedModel
) -> None:
    # validators cache different pairs, so the same pair runs in different batches: the
    # counts (what the verdict reads) must not depend on what else is in the pass
    model = load_artefact(overwrite.artefact).model
    priors = [parse_evidence(m.evidence_bytes) for m in (watermarked, clean, overwrite)]
    priors += [parse_evidence(evidence_with(watermarked, trigger_count=300))]
    together = compute_carry_stats(model, priors)
    alone = [compute_carry_stats(model, [p])[0] for p in priors]
    assert together == alone
    assert compute_carry_stats(model, priors[::-1]) == together[::-1]


def test_the_same_model_always_encodes_to_the_same_bytes(
    watermarked: TrainedModel, tmp_path: Path
) -> None:
    """safetensors writes its header from a hash map, in an order that changes from call to
    call; the artefact's header is re-written in sorted order, so one model has one aid."""
    from authchain.ml_service.artefact import encode_artefact

    loaded = load_artefact(watermarked.artefact)
    encodings = {encode_artefact(loaded.model, loaded.arch, loaded.config) for _ in range(8)}
    assert len(encodings) == 1
    (data,) = encodings
    size = int.from_bytes(data[:8], "little")
    assert size % 8 == 0 and json.loads(data[8 : 8 + size])  # aligned, and valid JSON
    path = tmp_path / "again.safetensors"
    path.write_bytes(data)
    again = load_artefact(path).model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(again[name], tensor), name
