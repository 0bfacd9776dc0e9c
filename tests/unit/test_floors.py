"""The chain's floors: exact binomial tails, and which claims they let through."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

from authchain.floors import (
    DEFAULT_FLOORS,
    Floors,
    check_profile,
    is_tail_within,
    log2_tail,
    loosest_taus,
    max_errors_for_tau,
    min_correct_for_tau,
    min_successes,
    p_value,
)


def exact_tail(m: int, k: int, c: int) -> Fraction:
    p = Fraction(1, c)
    return sum((math.comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(max(m, 0), k + 1)),
               Fraction(0))  # fmt: skip


@given(st.integers(1, 40), st.integers(2, 12), st.integers(0, 41), st.integers(1, 80))
def test_tail_decision_is_exact(k: int, c: int, m: int, f: int) -> None:
    assert is_tail_within(m, k, c, f) == (exact_tail(m, k, c) <= Fraction(1, 2**f))


@given(st.integers(1, 60), st.integers(2, 12), st.integers(1, 80))
def test_min_successes_is_the_smallest_passing_count(k: int, c: int, f: int) -> None:
    m = min_successes(k, c, f)
    if m is None:
        assert not is_tail_within(k, k, c, f)
    else:
        assert is_tail_within(m, k, c, f)
        assert m == 0 or not is_tail_within(m - 1, k, c, f)


def test_floats_agree_with_scipy_where_scipy_is_finite() -> None:
    for m, k, c in [(90, 100, 10), (57, 64, 2), (20, 100, 10), (103, 128, 2)]:
        assert p_value(m, k, c) == pytest.approx(binom.sf(m - 1, k, 1 / c), rel=1e-9)
        assert log2_tail(m, k, c) == pytest.approx(math.log2(binom.sf(m - 1, k, 1 / c)), abs=1e-6)


def test_the_tail_at_4096_triggers_is_a_number() -> None:
    # the old term-by-term float sum raised OverflowError here: a 500, then a poison tx
    for c in (2, 10, 4096):
        p = p_value(4096, 4096, c)
        assert isinstance(p, float) and 0.0 <= p < 1e-300
        assert math.isfinite(log2_tail(4096, 4096, c))
        assert log2_tail(4096, 4096, c) == pytest.approx(-4096 * math.log2(c))
    assert is_tail_within(4096, 4096, 10, 64) and not is_tail_within(400, 4096, 10, 64)


def test_tau_thresholds_use_the_verifiers_float_comparison() -> None:
    assert 0.57 * 100 < 57  # in binary, yet the verifier's 57 / 100 >= 0.57 holds
    assert min_correct_for_tau(0.57, 100) == 57
    assert min_correct_for_tau(0.9, 100) == 90
    assert min_correct_for_tau(0.0, 100) == 0 and min_correct_for_tau(1.0, 7) == 7
    assert max_errors_for_tau(0.2, 128) == 25 and max_errors_for_tau(0.0, 64) == 0
    for tau in (0.1, 0.33, 0.5, 0.901, 0.999):
        for k in (7, 64, 100, 333):
            m = min_correct_for_tau(tau, k)
            assert m / k >= tau and (m == 0 or (m - 1) / k < tau)
            e = max_errors_for_tau(tau, k)
            assert e / k <= tau and (e == k or (e + 1) / k > tau)


SEED: dict[str, Any] = {
    "tau_input": 0.9, "tau_feat": 0.2, "logit_band_low": -0.05, "logit_band_high": 0.05
}  # fmt: skip
STRENGTH: dict[str, Any] = {"trigger_count": 100, "signature_bits": 128, "num_classes": 10}


def test_the_seed_profile_at_the_default_strength_meets_the_floors() -> None:
    assert check_profile(DEFAULT_FLOORS, **STRENGTH, **SEED) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger_count": 1}, "trigger_count"),  # forgery 3: grindable evidence
        ({"signature_bits": 1}, "signature_bits"),
        ({"num_classes": 1}, "num_classes"),
        ({"tau_input": 0.0}, "wm_profile.tau_input"),  # forgery 1: permissive profile
        ({"tau_input": 0.45}, "wm_profile.tau_input"),
        ({"tau_feat": 1.0}, "wm_profile.tau_feat"),
        ({"tau_feat": 0.25, "signature_bits": 128}, "wm_profile.tau_feat"),
        ({"signature_bits": 64}, "wm_profile.tau_feat"),  # 0.2 of 64 bits is too loose
        ({"logit_band_low": -1.0}, "wm_profile.logit_band_low"),
        ({"logit_band_high": 0.5}, "wm_profile.logit_band_high"),
        ({"trigger_count": 64, "num_classes": 2}, "wm_profile.tau_input"),  # 2^-64: all 64
    ],
)
def test_a_claim_below_a_floor_is_named(change: dict[str, float], field: str) -> None:
    claim = {**STRENGTH, **SEED, **change}
    problem = check_profile(DEFAULT_FLOORS, **claim)
    assert problem is not None and problem[0] == field, problem
    if field.startswith("wm_profile.tau"):
        assert "2^-" in problem[1]  # says which floor


def test_the_loosest_allowed_profile_passes_and_a_hair_looser_does_not() -> None:
    loosest = loosest_taus(DEFAULT_FLOORS, 100, 128, 10)
    assert loosest is not None
    tau_input, tau_feat = loosest
    base: dict[str, Any] = {**STRENGTH, "logit_band_low": 0.0, "logit_band_high": 0.0}
    assert check_profile(DEFAULT_FLOORS, **base, tau_input=tau_input, tau_feat=tau_feat) is None
    looser_in = check_profile(DEFAULT_FLOORS, **base, tau_input=tau_input - 0.01, tau_feat=0.0)
    looser_feat = check_profile(DEFAULT_FLOORS, **base, tau_input=1.0, tau_feat=tau_feat + 0.01)
    assert looser_in is not None and looser_in[0] == "wm_profile.tau_input"
    assert looser_feat is not None and looser_feat[0] == "wm_profile.tau_feat"


def test_floors_are_the_grinding_arithmetic() -> None:
    # an attacker who tries 2^40 key seeds against a model he holds passes both factors with
    # chance at most 2^40 * 2^-64 * 2^-32 = 2^-56 (docs/SECURITY.md)
    f = Floors()
    assert 40 - f.trigger_p_log2 - f.feature_p_log2 == -56
    assert 40 - f.derivative_p_log2 == -24
