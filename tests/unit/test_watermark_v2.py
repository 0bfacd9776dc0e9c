"""`multi_factor_v2`: a signature no function-preserving rewrite moves, an exact null, one
derivative decision over both factors, and `multi_factor_v1` registrations still verified.

Tiny models trained in this session (tests/ml_models.py); no HTTP here (tests/e2e/test_removal.py
plays the same attacks through a real node and ML service).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from scipy.stats import binom, chisquare

from authchain.floors import DEFAULT_FLOORS
from authchain.ml_service import attacks
from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.data import load_digits_split
from authchain.ml_service.models import SmallResNet, SmallResNetConfig, get_architecture
from authchain.ml_service.models.timm_arch import DEFAULT_TIMM_MODELS
from authchain.ml_service.registry import FilesystemStore
from authchain.ml_service.schemas import VerifyRequest
from authchain.ml_service.verifier import Verifier
from authchain.ml_service.watermark import signature
from authchain.ml_service.watermark.embed import EmbedSpec, make_evidence, new_key_material
from authchain.ml_service.watermark.evidence import (
    EvidenceV2,
    KeyMaterial,
    parse_evidence,
)
from authchain.ml_service.watermark.signature import (
    float64_summaries,
    kernel_shapes,
    layer_moments,
    readout,
    readout_moments,
    readout_shapes,
    spatial_layers,
    weight_summary,
)
from authchain.ml_service.watermark.verify import CarryStats, compute_carry_stats, exact_logits
from tests.support.models import SEED_PROFILE, ModelCache, TrainedModel

V1_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "multi_factor_v1"


def owner_readouts(model: torch.nn.Module, evidence: EvidenceV2) -> torch.Tensor:
    """Every readout f_j of the evidence's signature in `model` (float64)."""
    keys = KeyMaterial.from_evidence(evidence).signature_keys()
    summaries = float64_summaries(model, [k.name for k in keys])
    return torch.cat([k.values(summaries[k.name]) for k in keys])


def logits(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The float64 logits of a float32 model (so the comparison sees the weights' rounding,
    not the comparison's)."""
    return exact_logits(model, inputs, 10, precision="float64").logits


# --- the signature does not move under function-preserving rewrites --------------------------


@pytest.mark.parametrize("rewrite", sorted(attacks.REWRITES))
def test_a_rewrite_leaves_the_function_and_the_signature_bits_alone(
    watermarked: TrainedModel, rewrite: str
) -> None:
    model = load_artefact(watermarked.artefact).model
    evidence = parse_evidence(watermarked.evidence_bytes)
    assert isinstance(evidence, EvidenceV2)
    rewritten = attacks.REWRITES[rewrite](model, torch.Generator().manual_seed(3))
    changed = sum(
        not torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), rewritten.state_dict().values(), strict=True)
    )
    assert changed >= 10  # the weights really moved (bfloat16 rounds every one)
    inputs = torch.cat([load_digits_split()[1].x[:64].double(),
                        KeyMaterial.from_evidence(evidence).trigger_inputs()])  # fmt: skip
    before, after = logits(model, inputs), logits(rewritten, inputs)
    if rewrite in ("float16", "bfloat16", "all"):  # re-saving rounds the weights themselves
        assert torch.equal(before.argmax(1), after.argmax(1))
        assert (before - after).abs().max() < 0.3
    else:
        assert (before - after).abs().max() < 1e-5
    original, read = owner_readouts(model, evidence), owner_readouts(rewritten, evidence)
    assert torch.equal(original > 0, read > 0)  # the same bits, every one
    if rewrite in ("permute", "rescale", "flip_signs", "fold_batchnorm"):
        assert torch.allclose(original, read, rtol=1e-4, atol=1e-9)
    carry = compute_carry_stats(rewritten, [evidence])[0]
    assert carry.feat_matches == watermarked.result.stats.feat_matches


def test_v1_read_its_bits_in_stored_order_and_a_permutation_took_them_to_chance(
    tmp_path: Path,
) -> None:
    # why v2 exists: the v1 fixture's 121/128 bits fall to chance after a free permutation
    evidence = parse_evidence((V1_FIXTURE / "evidence.json").read_bytes())
    model = load_artefact(V1_FIXTURE / "model.safetensors").model
    assert compute_carry_stats(model, [evidence])[0].feat_matches == 121
    permuted = attacks.permute_channels(model, torch.Generator().manual_seed(0))
    matches = compute_carry_stats(permuted, [evidence])[0].feat_matches
    assert matches is not None and matches < 90


@pytest.mark.parametrize("name", DEFAULT_TIMM_MODELS)
def test_every_allow_listed_family_reads_the_same_bits_after_any_channel_rewrite(
    name: str,
) -> None:
    # a function-preserving rewrite acts on each weight [out, in, kh, kw] by permuting its
    # rows and columns and scaling them (rows by any non-zero number, columns by alpha > 0):
    # the readouts of every spatial weight of every allow-listed family do not move
    torch.manual_seed(0)
    extra: dict[str, Any] = {"img_size": 32} if "patch16" in name else {}
    model = timm.create_model(name, pretrained=False, num_classes=10, **extra)
    layers = spatial_layers(model)
    assert layers, f"{name} has no spatial conv weight"
    key = KeyMaterial(b"\x05" * 32, b"\x06" * 32, (3, 32, 32), 10, 64, 64 * len(layers), 4,
                      "multi_factor_v2", tuple((n, 64) for n in layers))  # fmt: skip
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(1)
    for k in key.signature_keys():
        weight = params[k.name].detach().double()
        out_ch, in_ch = weight.shape[:2]
        rows = torch.randn(out_ch, generator=g, dtype=torch.float64) * 3
        cols = torch.exp(torch.randn(in_ch, generator=g, dtype=torch.float64))
        moved = weight * rows.reshape(-1, 1, 1, 1) * cols.reshape(1, -1, 1, 1)
        moved = moved[torch.randperm(out_ch, generator=g)][:, torch.randperm(in_ch, generator=g)]
        before = k.values(weight_summary(weight))
        after = k.values(weight_summary(moved))
        assert torch.equal(before > 0, after > 0), k.name
        assert torch.allclose(before, after, rtol=1e-6, atol=1e-12), k.name


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (32, 32, 3, 3), (64, 48, 5, 5), (16, 1, 7, 7)])
def test_the_two_ways_of_summing_a_readout_agree(shape: tuple[int, int, int, int]) -> None:
    # training sums kernel by kernel (small layers) or by moments (large ones); validators
    # always by moments: the same number either way
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a, c, e = torch.randn(
        3, 40, 45, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    shapes = kernel_shapes(weight)
    direct = readout_shapes(shapes, a, c, e)
    assert torch.allclose(direct, readout(weight, a, c, e), rtol=1e-10, atol=1e-15)
    by_moments = readout_moments(layer_moments(shapes), a, c, e)
    assert torch.allclose(direct, by_moments, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("shape", [(700, 9, 3, 3), (3, 5000, 5, 5), (64, 64, 1, 3)])
def test_kernel_shapes_chunk_by_chunk_equal_all_at_once(
    shape: tuple[int, int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # validators compute shapes a few thousand kernels at a time; the value of each kernel's
    # shape must not depend on how many were computed with it, to the last bit
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    weight[1, 2] = 0.0  # a zero kernel
    chunked = kernel_shapes(weight)
    monkeypatch.setattr(signature, "CHUNK_KERNELS", 1 << 30)
    whole = kernel_shapes(weight)
    assert torch.equal(chunked, whole)
    assert torch.equal(kernel_shapes(weight.clone().requires_grad_()), whole)
    assert not whole[1, 2].any()


def test_readouts_are_the_same_to_the_last_bit_at_any_thread_count() -> None:
    # a validator's bits must not depend on its thread count: both kinds of summary, on
    # layers small (kernel by kernel) and large (moments), depthwise included
    g = torch.Generator().manual_seed(5)
    threads = torch.get_num_threads()
    try:
        for shape in [(40, 30, 3, 3), (128, 128, 3, 3), (96, 1, 5, 5), (256, 64, 3, 3)]:
            weight = torch.randn(shape, generator=g)
            a, c, e = torch.randn(3, 100, 45, generator=g, dtype=torch.float64)
            seen = []
            for n in (1, 2, 1, 2):
                torch.set_num_threads(n)
                seen.append(weight_summary(weight).readout(a, c, e))
            assert all(torch.equal(s, seen[0]) for s in seen), shape
    finally:
        torch.set_num_threads(threads)


# --- the null holds: without the key, the bits are fair coins --------------------------------


def test_the_null_bit_matches_fit_the_binomial() -> None:
    # 20 independently initialised models x 10 keys = 200 pairs, seeded: the matches of
    # 2,048 bits must fit Binomial(2048, 1/2). Chi-square over 10 equiprobable bins of the
    # exact binomial; the test fails at p < 0.001 (a correct null fails it 1 time in 1,000,
    # and these seeds are fixed, so the outcome is too). The derivative test, both factors
    # together, flags none of the 200.
    n, counts = 2048, []
    arch, spec = get_architecture("small_resnet"), EmbedSpec()
    for m in range(20):
        torch.manual_seed(10_000 + m)
        model = SmallResNet(SmallResNetConfig.tiny()).eval()
        evidences = [
            make_evidence(model, new_key_material(bytes([m]) * 32, arch, 10, spec,
                                                  bytes([k]) * 32, model), arch, spec)
            for k in range(10)
        ]  # fmt: skip
        for carry in compute_carry_stats(model, evidences):
            assert carry.signature_bits == n and carry.feat_matches is not None
            counts.append(carry.feat_matches)
            assert not carry.carries(DEFAULT_FLOORS.derivative_p_log2)
    edges = [int(binom.ppf(q / 10, n, 0.5)) for q in range(1, 10)]
    cdf = [0.0, *(float(binom.cdf(e, n, 0.5)) for e in edges), 1.0]
    expected = [len(counts) * (hi - lo) for lo, hi in itertools.pairwise(cdf)]
    observed = [sum(lo < c <= hi for c in counts) for lo, hi in itertools.pairwise([-1, *edges, n])]
    assert sum(observed) == 200
    assert chisquare(observed, expected).pvalue > 0.001, (observed, expected)
    mean = sum(counts) / len(counts)
    assert abs(mean - n / 2) < 4 * (n / 4 / len(counts)) ** 0.5  # 4 standard errors


def test_the_combined_test_flags_no_independent_model(
    watermarked: TrainedModel, clean: TrainedModel
) -> None:
    # an honest model is never flagged by chance: the session's clean and watermarked models
    # against 40 unrelated keys each (and each other)
    for model in (watermarked, clean):
        net = load_artefact(model.artefact).model
        priors = []
        for k in range(40):
            evidence = parse_evidence(model.evidence_bytes)
            assert isinstance(evidence, EvidenceV2)
            priors.append(evidence.model_copy(update={"key_seed": f"{k + 1:064x}"}))
        for carry in compute_carry_stats(net, priors):
            assert not carry.carries(DEFAULT_FLOORS.derivative_p_log2), carry.describe()
            assert carry.log2_p_value() > -30
    other = [parse_evidence(clean.evidence_bytes)]
    net = load_artefact(watermarked.artefact).model
    assert not compute_carry_stats(net, other)[0].carries(DEFAULT_FLOORS.derivative_p_log2)


def test_the_combined_test_flags_a_copy_each_factor_alone_misses() -> None:
    # 37/100 triggers (2^-40.7) and 1,190/2,048 bits (2^-43.0): neither reaches 2^-64 ...
    carry = CarryStats(37, 100, 10, 1190, 2048)
    assert carry.carries(64) and carry.log2_p_value() < -64  # ... together they do
    assert not CarryStats(37, 100, 10, None, 2048).carries(64)  # a missing factor adds nothing
    assert not CarryStats(12, 100, 10, 1040, 2048).carries(64)  # chance adds nothing
    assert "together p = 2^-77.8" in carry.describe()


# --- what a thief does, through the verifier ---------------------------------------------------


def put(store: FilesystemStore, artefact: bytes, evidence: bytes) -> tuple[str, str]:
    import blake3

    aid, ev = blake3.blake3(artefact).hexdigest(), blake3.blake3(evidence).hexdigest()
    (store.model_root / f"{aid}.safetensors").write_bytes(artefact)
    (store.evidence_root / f"{ev}.json").write_bytes(evidence)
    return aid, ev


def verify(
    store: FilesystemStore, aid: str, ev: str, scheme: str, registered: list[dict[str, str]],
    **extra: Any,
) -> Any:  # fmt: skip
    body = {"aid": aid, "scheme_id": scheme, "evidence_hash": ev, "wm_profile": SEED_PROFILE,
            "registered": registered, **extra}  # fmt: skip
    return Verifier(store).check(VerifyRequest.model_validate(body))


@pytest.fixture
def store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "models", tmp_path / "evidence")


def test_a_v1_registration_made_before_v2_still_verifies(store: FilesystemStore) -> None:
    artefact = (V1_FIXTURE / "model.safetensors").read_bytes()
    evidence = (V1_FIXTURE / "evidence.json").read_bytes()
    aid, ev = put(store, artefact, evidence)
    assert aid == "fcdb30e14ca500cd0dc1c4dcbb342b605c1bfc70ca750eb1bcc6aacb9c0abf1e"
    old_floors = {"min_signature_bits": 64}  # the genesis it was registered under
    outcome = verify(store, aid, ev, "multi_factor_v1", [], floors=old_floors,
                     signature_bits=128, owner="a1" * 32)  # fmt: skip
    assert outcome.ok, outcome
    assert (outcome.stats.trigger_correct, outcome.stats.feat_matches) == (100, 121)
    # a new chain's minimum is 1,024 bits: v1's 128 would not be accepted there today
    outcome = verify(store, aid, ev, "multi_factor_v1", [], signature_bits=128)
    assert not outcome.ok and outcome.reason == "evidence_below_min_strength"


def test_a_v1_registration_still_counts_in_derivative_detection(
    store: FilesystemStore, model_cache: ModelCache
) -> None:
    from authchain.ml_service.outputs import ModelReport
    from authchain.ml_service.owner import train_model

    aid, ev = put(store, (V1_FIXTURE / "model.safetensors").read_bytes(),
                  (V1_FIXTURE / "evidence.json").read_bytes())  # fmt: skip

    def make(out: Path) -> ModelReport:  # the thief re-watermarks the stolen v1 model
        shutil.copytree(V1_FIXTURE, out / "stolen")
        return train_model(
            b"\xd1" * 32, out / "thief", tiny=True, epochs=2, seed=5, watermark=True,
            base=out / "stolen" / "model.safetensors", spec=EmbedSpec(), key_seed=b"\x0b" * 32,
        )  # fmt: skip

    thief = model_cache.get("v1-thief", make, aid).result
    assert thief.passes and thief.scheme_id == "multi_factor_v2"
    t_aid, t_ev = put(store, thief.artefact.read_bytes(),
                      thief.evidence.read_bytes())  # fmt: skip
    prior = [{"aid": aid, "owner": "a1" * 32, "evidence_hash": ev}]
    assert verify(store, t_aid, t_ev, "multi_factor_v2", []).ok
    outcome = verify(store, t_aid, t_ev, "multi_factor_v2", prior)
    assert not outcome.ok and outcome.reason == "carries_registered_watermark", outcome
    assert aid in outcome.detail
