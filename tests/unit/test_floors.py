"""The chain's floors: exact binomial tails, and which claims they let through."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import mpmath
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from authchain.floors import (
    DEFAULT_FLOORS,
    Floors,
    check_profile,
    is_combined_within,
    is_tail_within,
    log2_combined,
    log2_tail,
    loosest_taus,
    max_errors_for_tau,
    min_correct_for_tau,
    min_successes,
    p_value,
    tail_fraction,
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
STRENGTH: dict[str, Any] = {"trigger_count": 100, "signature_bits": 2048, "num_classes": 10}


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
        ({"tau_feat": 0.45, "signature_bits": 1024}, "wm_profile.tau_feat"),
        ({"signature_bits": 128}, "signature_bits"),  # v1's 128 bits: below the minimum
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
    loosest = loosest_taus(DEFAULT_FLOORS, 100, 2048, 10)
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


# --- one derivative decision over both factors (Fisher's method) ------------------------------


def fisher_bound(t: Fraction) -> mpmath.mpf:
    """t (1 - ln t) at 300 digits: the reference the exact decision must agree with."""
    with mpmath.workdps(300):
        value = mpmath.mpf(t.numerator) / t.denominator
        return value * (1 - mpmath.log(value))


@given(
    st.integers(1, 60), st.integers(2, 12), st.integers(0, 61),
    st.integers(1, 300), st.integers(0, 301), st.integers(1, 120),
)  # fmt: skip
def test_the_combined_decision_agrees_with_rational_arithmetic(
    k: int, c: int, m1: int, n: int, m2: int, f: int
) -> None:
    tails = (tail_fraction(m1, k, c), tail_fraction(m2, n, 2))
    assert tails == (exact_tail(m1, k, c), exact_tail(m2, n, 2)) or n > 40  # exact tails
    t = tails[0] * tails[1]
    with mpmath.workdps(300):
        bound, floor = fisher_bound(t), mpmath.mpf(2) ** -f
        assume(t == 0 or abs(bound - floor) > floor * mpmath.mpf(10) ** -250)
        expected = t == 0 or bound <= floor
    assert is_combined_within(tails, f) == expected
    if t:
        assert log2_combined(tails) == pytest.approx(float(mpmath.log(bound, 2)), abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 16), st.integers(2, 6), st.integers(1, 24), st.integers(1, 14))
def test_under_the_null_the_combined_test_flags_with_chance_at_most_its_floor(
    k: int, c: int, n: int, f: int
) -> None:
    # every outcome of both exact binomials, enumerated: Fisher's bound holds for discrete tails
    p_trig = [Fraction(math.comb(k, i) * (c - 1) ** (k - i), c**k) for i in range(k + 1)]
    p_sig = [Fraction(math.comb(n, j), 2**n) for j in range(n + 1)]
    flagged = sum(
        (p_trig[i] * p_sig[j] for i in range(k + 1) for j in range(n + 1)
         if is_combined_within((tail_fraction(i, k, c), tail_fraction(j, n, 2)), f)),
        Fraction(0),
    )  # fmt: skip
    assert flagged <= Fraction(1, 2**f)


def test_the_combined_test_flags_what_each_factor_alone_misses() -> None:
    # 37 of 100 triggers over 10 classes and 1,190 of 2,048 signature bits: each about 2^-40
    trig, sig = tail_fraction(37, 100, 10), tail_fraction(1190, 2048, 2)
    assert not is_tail_within(37, 100, 10, 64) and not is_tail_within(1190, 2048, 2, 64)
    assert 2**-44 < trig < 2**-36 and 2**-44 < sig < 2**-36
    assert is_combined_within((trig, sig), 64)
    assert log2_combined((trig, sig)) < -64
    # ... but not chance-level evidence, nor one strong factor next to a missing one
    assert not is_combined_within((tail_fraction(12, 100, 10), tail_fraction(1040, 2048, 2)), 64)
    assert is_combined_within((tail_fraction(100, 100, 10),), 64)
    assert not is_combined_within((trig,), 64)


def test_a_griefer_grinding_2_to_the_40_keys_still_fails() -> None:
    # each key is one draw from the null: flagged with chance at most 2^-64 by the test above,
    # so 2^40 keys succeed with chance at most 2^40 * 2^-64 = 2^-24 (docs/SECURITY.md)
    assert 40 - DEFAULT_FLOORS.derivative_p_log2 <= -24
