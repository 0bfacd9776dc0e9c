"""The chain's security floors, and the exact binomial tails a watermark claim is judged by.

A watermark claim passes only if a model *without* the owner's watermark would pass with an
astronomically small chance. Under that null hypothesis both factors are exact binomials,
whatever the model does, because labels and bits are drawn from the owner's key independently
of the inputs the model sees:

- trigger factor: `correct ~ Binomial(K, 1/C)`: each key-derived label is uniform over the C
  classes and independent of the trigger image, so a model that never saw the key hits it
  with chance exactly 1/C, trigger by trigger;
- feature factor: `matches ~ Binomial(n, 1/2)`: each signature bit is a fair coin that is
  independent of the key-derived projection.

Genesis fixes the floors (`Floors`); a claim passes only if both tails are at or below theirs.

Derivative detection asks one question of both factors together, "does this model carry that
earlier watermark?", with Fisher's method: the two exact tails p1 (triggers) and p2 (signature)
are independent under the null, so `P[p1 * p2 <= t] <= t (1 - ln t)` (`is_combined_within`).
The decision is made in exact integer arithmetic, never in floating point, so every validator
reaches the same verdict on every machine: `P[X >= m] <= 2^-f` is checked as
`sum_{i>=m} comb(K, i) (C-1)^(K-i) * 2^f <= C^K`. Floats (scipy) are only for reporting.

This module imports nothing from `chain`, `gateway` or `ml_service`; all three use it.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache


@dataclass(frozen=True)
class Floors:
    """What genesis demands of every watermark claim (see docs/SECURITY.md for the numbers)."""

    min_trigger_count: int = 64
    """Smallest trigger set (K) evidence may have."""
    min_signature_bits: int = 1024
    """Shortest signature (n) evidence may have: 1024, so that a signature survives what the
    robustness experiments throw at it (docs/SECURITY.md; `multi_factor_v2` writes 2048)."""
    trigger_p_log2: int = 64
    """The trigger factor's p-value must be <= 2^-trigger_p_log2."""
    feature_p_log2: int = 32
    """The feature factor's p-value must be <= 2^-feature_p_log2."""
    derivative_p_log2: int = 64
    """A candidate carries an earlier registration's watermark if the two factors of that
    registration's key, combined (Fisher's method, `is_combined_within`), reach
    p <= 2^-derivative_p_log2 on it."""
    max_logit_band: float = 0.05
    """A profile's logit band must lie inside [-max_logit_band, max_logit_band]."""


DEFAULT_FLOORS = Floors()


def _power(c: int, k: int) -> int:
    result: int = c**k
    return result


def _tail_numerator(m: int, k: int, c: int) -> int:
    """sum_{i=m}^{k} comb(k, i) (c-1)^(k-i): the tail P[Binomial(k, 1/c) >= m] times c^k.

    Summed from whichever end has fewer terms (the lower sum is subtracted from c^k), so the
    cost is O(min(m, k - m)) big-integer steps: a few milliseconds at k = c = 4096.
    """
    if m <= 0:
        return _power(c, k)
    if m > k:
        return 0
    if m <= k - m:
        lower = 0
        for i, term in enumerate(_terms_up(k, c)):
            if i == m:
                break
            lower += term
        return _power(c, k) - lower
    total = 0
    for i, term in _terms_down(k, c):
        if i < m:
            break
        total += term
    return total


def _terms_up(k: int, c: int) -> Iterator[int]:
    """comb(k, i) (c-1)^(k-i) for i = 0, 1, ..., k (each step an exact division)."""
    term = _power(c - 1, k)
    for i in range(k + 1):
        yield term
        if i < k:
            term = term * (k - i) // ((i + 1) * (c - 1))


def _terms_down(k: int, c: int) -> Iterator[tuple[int, int]]:
    """(i, comb(k, i) (c-1)^(k-i)) for i = k, k-1, ..., 0 (each step an exact division)."""
    term = 1
    for i in range(k, -1, -1):
        yield i, term
        if i > 0:
            term = term * i * (c - 1) // (k - i + 1)


def is_tail_within(m: int, k: int, c: int, floor_log2: int) -> bool:
    """Whether P[Binomial(k, 1/c) >= m] <= 2^-floor_log2, exactly."""
    return _tail_numerator(m, k, c) << floor_log2 <= _power(c, k)


@lru_cache(maxsize=4096)
def min_successes(k: int, c: int, floor_log2: int) -> int | None:
    """The smallest m with P[Binomial(k, 1/c) >= m] <= 2^-floor_log2; None if even k fails.

    Over two classes the answer lies above k/2, elsewhere far below it: each is found from the
    nearer end, so CheckTx costs milliseconds whatever (k, c) a stranger states.
    """
    total = _power(c, k)
    bound = total >> floor_log2  # tail * 2^f <= c^k  <=>  tail <= floor(c^k / 2^f)
    if c > 2:
        tail = total
        for m, term in enumerate(_terms_up(k, c)):
            if tail <= bound:
                return m
            tail -= term  # now the tail from m + 1
        return None  # even all k correct is too likely
    tail = 0
    for i, term in _terms_down(k, c):
        if tail + term > bound:
            return None if i == k else i + 1
        tail += term
    return 0


def tail_fraction(m: int, k: int, c: int) -> Fraction:
    """P[Binomial(k, 1/c) >= m], exactly."""
    return Fraction(_tail_numerator(m, k, c), _power(c, k))


def is_combined_within(tails: tuple[Fraction, ...], floor_log2: int) -> bool:
    """Whether Fisher's combination of independent exact tails is <= 2^-floor_log2, exactly.

    For two independent p-values that are uniform or, like binomial tails, stochastically
    larger than uniform, `P[p1 p2 <= t] <= t (1 - ln t)`: the event is a decreasing set in
    (p1, p2), so larger p-values only make it rarer, and for two uniforms it is exactly
    t (1 - ln t). One tail alone is judged as it is. The decision
    `t (1 - ln t) <= 2^-f`, i.e. `ln(1/t) <= 1/(2^f t) - 1`, compares a logarithm of a rational
    with a rational: `decimal` computes the logarithm with a stated error at growing precision
    until the comparison is decided. Both sides are never equal (ln of a rational other than 1
    is irrational), so this ends; past 2,000 digits it answers False, which only ever fails to
    flag.
    """
    if len(tails) == 1:
        return tails[0] <= Fraction(1, 1 << floor_log2)
    if len(tails) != 2:
        raise ValueError("Fisher's bound here combines one or two tails")
    t = tails[0] * tails[1]
    if t == 0:
        return True
    if t >= 1:
        return False
    rhs = 1 / (t * (1 << floor_log2)) - 1  # ln(1/t) must be at most this
    if rhs <= 0:
        return False
    bits = t.denominator.bit_length() - t.numerator.bit_length() + 1
    if rhs >= bits:  # ln(1/t) < log2(1/t) < bits
        return True
    return _ln_at_most(1 / t, rhs)


def _ln_at_most(x: Fraction, bound: Fraction) -> bool:
    """Whether ln(x) <= bound, for rational x > 1 and ln(x) != bound."""
    digits = 40
    while digits <= 2000:
        with decimal.localcontext() as ctx:
            ctx.prec = digits
            # each operation is correctly rounded: the ratio to relative 10^(1-digits), its ln
            # to half a unit; 10^(3-digits) (1 + |ln|) bounds both with room to spare
            value = (decimal.Decimal(x.numerator) / decimal.Decimal(x.denominator)).ln()
            error = decimal.Decimal(10) ** (3 - digits) * (1 + abs(value))
            low, high = value - error, value + error
            target = decimal.Decimal(bound.numerator) / decimal.Decimal(bound.denominator)
            target_error = abs(target) * decimal.Decimal(10) ** (1 - digits)
            if high < target - target_error:
                return True
            if low > target + target_error:
                return False
        digits *= 2
    return False


def log2_combined(tails: tuple[Fraction, ...]) -> float:
    """log2 of Fisher's bound `t (1 - ln t)` on the tails' product (one tail: itself)."""
    t = math.prod(tails, start=Fraction(1))
    if t == 0:
        return -math.inf
    log2_t = math.log2(t.numerator) - math.log2(t.denominator)
    if len(tails) == 1:
        return log2_t
    return min(0.0, log2_t + math.log2(1 - log2_t * math.log(2)))


def log2_tail(m: int, k: int, c: int) -> float:
    """log2 P[Binomial(k, 1/c) >= m], finite for every k (scipy's logsf is -inf out there)."""
    numerator = _tail_numerator(m, k, c)
    return -math.inf if numerator == 0 else math.log2(numerator) - k * math.log2(c)


def p_value(m: int, k: int, c: int) -> float:
    """P[Binomial(k, 1/c) >= m] as a float (0.0 below the smallest double)."""
    from scipy.stats import binom  # only the ML side reports floats; the chain never does

    return float(binom.sf(m - 1, k, 1.0 / c))


def min_correct_for_tau(tau: float, k: int) -> int:
    """The smallest `correct` with `correct / k >= tau`, in the float comparison the verifier
    uses (0.57 * 100 is 56.99999999999999 in binary, yet 57 / 100 >= 0.57)."""
    m = max(0, math.floor(tau * k) - 1)
    while m <= k and m / k < tau:
        m += 1
    return m


def max_errors_for_tau(tau: float, n: int) -> int:
    """The largest `errors` with `errors / n <= tau`."""
    e = min(n, math.ceil(tau * n) + 1)
    while e >= 0 and e / n > tau:
        e -= 1
    return e


def check_profile(
    floors: Floors,
    *,
    trigger_count: int,
    signature_bits: int,
    num_classes: int,
    tau_input: float,
    tau_feat: float,
    logit_band_low: float,
    logit_band_high: float,
) -> tuple[str, str] | None:
    """None if a claim of this strength and profile cannot pass below the floors; else
    (field, why). Every field is named as in a `TxRegisterModel`'s `evidence`."""
    if trigger_count < floors.min_trigger_count:
        return "trigger_count", f"{trigger_count} < the chain's minimum {floors.min_trigger_count}"
    if signature_bits < floors.min_signature_bits:
        return (
            "signature_bits",
            f"{signature_bits} < the chain's minimum {floors.min_signature_bits}",
        )
    if num_classes < 2:
        return "num_classes", f"{num_classes} < 2"
    need = min_successes(trigger_count, num_classes, floors.trigger_p_log2)
    if need is None:
        return (
            "trigger_count",
            f"{trigger_count} triggers over {num_classes} classes cannot reach p <= "
            f"2^-{floors.trigger_p_log2}",
        )
    allowed = min_correct_for_tau(tau_input, trigger_count)
    if allowed < need:
        return (
            "wm_profile.tau_input",
            f"{tau_input} lets {allowed}/{trigger_count} correct triggers pass; the chain's floor "
            f"p <= 2^-{floors.trigger_p_log2} needs at least {need} (tau_input >= "
            f"{need / trigger_count:.4g})",
        )
    need_bits = min_successes(signature_bits, 2, floors.feature_p_log2)
    if need_bits is None:
        return (
            "signature_bits",
            f"{signature_bits} bits cannot reach p <= 2^-{floors.feature_p_log2}",
        )
    max_err = max_errors_for_tau(tau_feat, signature_bits)
    if signature_bits - max_err < need_bits:
        return (
            "wm_profile.tau_feat",
            f"{tau_feat} lets {max_err}/{signature_bits} wrong bits pass; the chain's floor "
            f"p <= 2^-{floors.feature_p_log2} allows at most {signature_bits - need_bits} "
            f"(tau_feat <= {(signature_bits - need_bits) / signature_bits:.4g})",
        )
    band = floors.max_logit_band
    if logit_band_low < -band:
        return "wm_profile.logit_band_low", f"{logit_band_low} < the chain's minimum {-band}"
    if logit_band_high > band:
        return "wm_profile.logit_band_high", f"{logit_band_high} > the chain's maximum {band}"
    return None


def loosest_taus(
    floors: Floors, trigger_count: int, signature_bits: int, num_classes: int
) -> tuple[float, float] | None:
    """The loosest (tau_input, tau_feat) the floors allow for this strength; None if none."""
    need = min_successes(trigger_count, num_classes, floors.trigger_p_log2)
    need_bits = min_successes(signature_bits, 2, floors.feature_p_log2)
    if need is None or need_bits is None:
        return None
    return need / trigger_count, (signature_bits - need_bits) / signature_bits
