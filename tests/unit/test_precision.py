"""fp32 with float64 fallback (`precision="fast"`) reaches the float64 verdict, also on models
built so that fp32 alone gets it wrong: argmax near-ties, a logit statistic on a band edge,
and a network that amplifies fp32 rounding past the guard."""

from __future__ import annotations

import torch
from torch import nn

from authchain.floors import DEFAULT_FLOORS
from authchain.ml_service.artefact import load_artefact
from authchain.ml_service.models import SmallResNet
from authchain.ml_service.watermark.evidence import Evidence, KeyMaterial, parse_evidence
from authchain.ml_service.watermark.verify import (
    FactorStats,
    Thresholds,
    as_float64,
    compute_carry_stats,
    compute_stats,
    decide,
    exact_logits,
    ieee_fp32,
    judge,
)
from tests.support.models import TrainedModel
from tests.support.precision import Amplifier, NearTie, rebuilt, with_own_reference

SEED = Thresholds(0.9, 0.2, -0.05, 0.05)


def load(trained: TrainedModel) -> tuple[SmallResNet, Evidence]:
    model = load_artefact(trained.artefact).model
    assert isinstance(model, SmallResNet)
    return model, parse_evidence(trained.evidence_bytes)


def fast_verdict(
    model: nn.Module, evidence: Evidence, profile: Thresholds
) -> tuple[str | None, FactorStats]:
    return decide(
        compute_stats(model, evidence),
        profile,
        DEFAULT_FLOORS,
        lambda: compute_stats(model, evidence, precision="float64"),
    )


def reference_verdict(
    model: nn.Module, evidence: Evidence, profile: Thresholds
) -> tuple[str | None, FactorStats]:
    stats = compute_stats(model, evidence, precision="float64")
    return judge(stats, profile, DEFAULT_FLOORS), stats


def naive_fp32_correct(model: nn.Module, evidence: Evidence) -> int:
    """Trigger hits of a plain fp32 pass (what verification without the fallback would see)."""
    key = KeyMaterial.from_evidence(evidence)
    with torch.no_grad():
        logits = model.float().eval()(key.trigger_inputs().float())
    return int((logits.argmax(dim=1) == key.trigger_labels()).sum())


def adversarial(kind: type[SmallResNet], trained: TrainedModel) -> tuple[SmallResNet, Evidence]:
    """The trained model's weights in an adversarial forward, with evidence to match."""
    base, evidence = load(trained)
    model = rebuilt(kind, base)
    return model, with_own_reference(model, evidence)


def test_argmax_near_ties_fall_back_to_float64(watermarked: TrainedModel) -> None:
    model, evidence = adversarial(NearTie, watermarked)
    reason, stats = fast_verdict(model, evidence, SEED)
    ref_reason, ref = reference_verdict(model, evidence, SEED)
    assert (reason, stats.trigger_correct) == (ref_reason, ref.trigger_correct)
    assert ref_reason is None and ref.trigger_correct == ref.trigger_count  # it passes in float64
    assert naive_fp32_correct(model, evidence) < 90  # plain fp32 would fail the same claim
    assert stats.exact_rows >= evidence.trigger_count  # the near-ties were recomputed


def test_logit_stat_on_a_band_edge_is_decided_in_float64(watermarked: TrainedModel) -> None:
    model, evidence = load(watermarked)
    shifted = [row[:] for row in evidence.reference_logits]
    shifted[3][5] += 0.03
    edge = evidence.model_copy(update={"reference_logits": shifted})
    ref_stat = compute_stats(model, edge, precision="float64").logit_stat
    assert abs(ref_stat - 0.03) < 1e-6
    fast = compute_stats(model, edge)
    assert fast.logit_stat_error > 0  # fp32 alone cannot place it within 1e-7
    verdicts = []
    for high in (ref_stat - 1e-7, ref_stat + 1e-7):  # just below, just above the statistic
        profile = Thresholds(0.9, 0.2, -0.05, high)
        reason, decided_on = fast_verdict(model, edge, profile)
        assert reason == reference_verdict(model, edge, profile)[0]
        assert decided_on.logit_stat_error == 0.0 and decided_on.logit_stat == ref_stat
        verdicts.append(reason)
    assert verdicts == ["logit_stat_outside_band", None]


def test_a_model_that_amplifies_rounding_is_verified_in_float64(
    watermarked: TrainedModel,
) -> None:
    model, evidence = adversarial(Amplifier, watermarked)
    reason, stats = fast_verdict(model, evidence, SEED)
    ref_reason, ref = reference_verdict(model, evidence, SEED)
    assert (reason, stats.trigger_correct) == (ref_reason, ref.trigger_correct)
    assert naive_fp32_correct(model, evidence) != ref.trigger_correct
    rows = evidence.trigger_count + evidence.probe_count
    assert stats.exact_rows == rows  # the audit distrusted fp32: the whole pass in float64


def test_ordinary_models_agree_and_stay_at_fp32_cost(
    watermarked: TrainedModel, clean: TrainedModel, overwrite: TrainedModel
) -> None:
    for trained in (watermarked, clean, overwrite):
        model, evidence = load(trained)
        reason, stats = fast_verdict(model, evidence, SEED)
        ref_reason, ref = reference_verdict(model, evidence, SEED)
        assert reason == ref_reason
        assert (stats.trigger_correct, stats.feat_matches) == (
            ref.trigger_correct,
            ref.feat_matches,
        )
        assert abs(stats.logit_stat - ref.logit_stat) <= stats.logit_stat_error
        assert stats.exact_rows <= 12  # a few close calls and the audit rows, not the pass
    model, _ = load(overwrite)
    priors = [parse_evidence(watermarked.evidence_bytes)]
    assert compute_carry_stats(model, priors) == compute_carry_stats(
        model, priors, precision="float64"
    )


def test_verdicts_do_not_depend_on_the_thread_count(watermarked: TrainedModel) -> None:
    model, evidence = adversarial(NearTie, watermarked)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fast_verdict(model, evidence, SEED)
        torch.set_num_threads(max(2, threads))
        many = fast_verdict(model, evidence, SEED)
    finally:
        torch.set_num_threads(threads)
    assert one[0] == many[0]
    assert one[1].trigger_correct == many[1].trigger_correct


def test_guard_rows_are_exact(watermarked: TrainedModel) -> None:
    """Recomputed rows hold float64 values; the others are within their guard."""
    model, evidence = load(watermarked)
    key = KeyMaterial.from_evidence(evidence)
    inputs = torch.cat([key.trigger_inputs(), key.probe_inputs()])
    fast = exact_logits(model, inputs, evidence.num_classes)
    with torch.no_grad():
        ref = as_float64(model, "cpu")(inputs)
    error = (fast.logits - ref).abs().amax(dim=1)
    assert bool((error <= fast.guard + 1e-12).all())
    assert bool((fast.logits.argmax(dim=1) == ref.argmax(dim=1)).all())


def test_the_fp32_pass_is_ieee_fp32_and_the_flags_come_back() -> None:
    """On CUDA, TF32 (cuDNN's default for convolutions) would fail every audit and send every
    pass to float64 (seen on an H200); the pass turns it off, also while another thread's pass
    is in flight, and restores what was set when the last one ends."""
    backends = torch.backends
    before = (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32)
    try:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = True, True
        with ieee_fp32():
            with ieee_fp32():  # a second pass, as another verifier thread's
                assert not backends.cudnn.allow_tf32 and not backends.cuda.matmul.allow_tf32
            assert not backends.cudnn.allow_tf32  # the first pass still runs
        assert backends.cudnn.allow_tf32 and backends.cuda.matmul.allow_tf32
    finally:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = before
