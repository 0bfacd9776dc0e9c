"""Verification of `multi_factor_v2` and `multi_factor_v1` (seed `watermark/verify.py`, which
only pretended).

Three factors, all computed in float64 on key-derived inputs (see `evidence.py`):

1. input factor   `trigger_acc`: accuracy on the K trigger inputs against the K trigger labels;
                  `p_value` = P[Binomial(K, 1/C) >= correct], the chance of doing that well
                  without the key. Passes if `trigger_acc >= tau_input` and `p_value` is at or
                  below the chain's floor.
2. feature factor `feat_dist`: bit error rate of the n signature bits read from the weights:
                  v2, from what a function-preserving rewrite cannot change, spread over the
                  model's spatial conv layers (`signature.py`); v1, sign(X · w) where w is one
                  layer averaged over output channels (Uchida et al. 2017) and X the key-derived
                  projection. `feat_p_value` = P[Binomial(n, 1/2) >= matches]. Passes if
                  `feat_dist <= tau_feat` and `feat_p_value` is at or below its floor.
3. logit factor   `logit_stat`: the largest |logit − reference logit| over every probe and
                  class. Passes if it lies in [logit_band_low, logit_band_high]. It binds the
                  evidence to this exact function (a different function cannot stay within the
                  band on every probe and class); it says nothing about who owns it, because an
                  owner makes the reference logits from the very model they register.

A claim holds only if all three pass. The floor decisions are exact integer arithmetic
(`authchain.floors`). The verdict is the float64 verdict, on any thread count or device.

**Precision: fp32 with float64 fallback** (`precision="fast"`, the default). The network runs
once in float32. Every row (input) gets a guard `g = 2^-GUARD_LOG2 * (1 + A)`, where A is the
largest |activation| that row produced in any layer (forward hooks): a bound on how far its
fp32 logits can be from the float64 ones, ~10^3 times what fp32 rounding gives a trained
network. Then, in float64 on just those rows:
- rows whose top-two logits are within 2g (an argmax that fp32 cannot decide), and rows with a
  non-finite value, are recomputed, so every argmax is the float64 argmax;
- `AUDIT_ROWS` more rows (the closest calls left) are recomputed too, and if any recomputed
  row's fp32 error exceeds g / AUDIT_SLACK, the model amplifies rounding beyond what the guard
  assumes: the whole pass is redone in float64.
`logit_stat` is an interval, its value ± `logit_stat_error` (the probe rows' largest guard);
`judge` decides the band from the interval, and raises `LogitUndecided` when it straddles an
edge, after which the caller recomputes the statistics in float64 (`decide` does this). The
feature factor is always float64 (a projection of one weight, not a forward pass).
`precision="float64"` runs everything in float64, as before: the reference the fast path
must equal (tests/unit/test_precision.py builds near-tie models to check it).

Derivative detection (`compute_carry_stats`) runs the trigger sets of many earlier
registrations through the candidate in one batched pass, and reads their signatures from its
weights (each layer's summary once, then each registration's directions);
`compute_stats(..., priors=...)` batches them into the claim's own pass. Whether the candidate
carries an earlier watermark is one decision over both factors: Fisher's method on their two
exact tails (`CarryStats.carries`).
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import torch
from torch import nn

from authchain.floors import (
    Floors,
    is_combined_within,
    is_tail_within,
    log2_combined,
    log2_tail,
    p_value,
    tail_fraction,
)
from authchain.ml_service.errors import EvidenceMismatch
from authchain.ml_service.watermark.evidence import (
    Evidence,
    EvidenceV1,
    KeyMaterial,
    get_feature_vector,
)
from authchain.ml_service.watermark.signature import (
    LayerSummary,
    count_matches,
    float64_summaries,
    is_spatial,
)

LOGIT_DECIMALS = 9
CHUNK = 256
"""Inputs per forward pass: bounds memory whatever K is, and is the same on every validator."""
GUARD_LOG2 = 14
"""A row's fp32 logits are trusted to within 2^-14 (1 + its largest |activation|)."""
AUDIT_ROWS = 2
AUDIT_SLACK = 8
"""Recomputed rows must show an fp32 error below guard / AUDIT_SLACK, or all goes float64."""

Precision = Literal["fast", "float64"]


class LogitUndecided(Exception):
    """The fp32 interval of `logit_stat` straddles a band edge: recompute in float64."""


@dataclass(frozen=True)
class FactorStats:
    """The three factors' statistics for one (model, evidence) pair."""

    trigger_acc: float
    trigger_correct: int
    trigger_count: int
    num_classes: int
    p_value: float
    log2_p_value: float
    feat_dist: float
    feat_matches: int
    signature_bits: int
    feat_p_value: float
    log2_feat_p_value: float
    logit_stat: float
    logit_stat_error: float = 0.0
    """The float64 `logit_stat` lies within ± this of `logit_stat` (0: it is the float64 one)."""
    exact_rows: int = 0
    """Rows computed in float64 (all of them with precision float64)."""


@dataclass(frozen=True)
class CarryStats:
    """How strongly a model carries one earlier registration's watermark."""

    trigger_correct: int
    trigger_count: int
    num_classes: int
    feat_matches: int | None
    """None when the model has none of the layers the registration's signature is read from
    (v1: no weight of its feature layer and width)."""
    signature_bits: int
    """The signature bits read (v2: those of the layers the model has)."""

    def tails(self) -> tuple[Fraction, ...]:
        """The exact tails of the factors that could be read: triggers, then signature."""
        trig = tail_fraction(self.trigger_correct, self.trigger_count, self.num_classes)
        if self.feat_matches is None:
            return (trig,)
        return trig, tail_fraction(self.feat_matches, self.signature_bits, 2)

    def carries(self, floor_log2: int) -> bool:
        """The watermark is there: both factors together, by Fisher's method, at or below
        2^-floor_log2 (`authchain.floors.is_combined_within`)."""
        return is_combined_within(self.tails(), floor_log2)

    def log2_p_value(self) -> float:
        """log2 of the combined p-value the decision is made on."""
        return log2_combined(self.tails())

    def describe(self) -> str:
        trig = log2_tail(self.trigger_correct, self.trigger_count, self.num_classes)
        text = f"{self.trigger_correct}/{self.trigger_count} triggers (p = 2^{trig:.1f})"
        if self.feat_matches is not None:
            feat = log2_tail(self.feat_matches, self.signature_bits, 2)
            text += f", {self.feat_matches}/{self.signature_bits} bits (p = 2^{feat:.1f})"
        return f"{text}; together p = 2^{self.log2_p_value():.1f}"


@dataclass(frozen=True)
class Thresholds:
    """A `wm_profile`."""

    tau_input: float
    tau_feat: float
    logit_band_low: float
    logit_band_high: float


def get_layer_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The parameter `name` of `model`; EvidenceMismatch if it has none, or a 1-d one."""
    params = dict(model.named_parameters())
    if name not in params or params[name].dim() < 2:
        raise EvidenceMismatch(
            "evidence_model_mismatch",
            f"the model has no weight tensor {name!r:.100} (feature_layer)",
        )
    return params[name]


def check_signature_layers(model: nn.Module, evidence: Evidence) -> None:
    """EvidenceMismatch unless the model has every weight the evidence's signature is read
    from (v2: as spatial conv weights)."""
    if isinstance(evidence, EvidenceV1):
        get_layer_weight(model, evidence.feature_layer)
        return
    params = dict(model.named_parameters())
    for layer in evidence.signature_layers:
        if layer.name not in params or not is_spatial(params[layer.name]):
            raise EvidenceMismatch(
                "evidence_model_mismatch",
                f"the model has no spatial conv weight {layer.name!r:.100} (signature_layers)",
            )


def check_model_fits(model: nn.Module, input_shape: tuple[int, ...], evidence: Evidence) -> None:
    """EvidenceMismatch unless the evidence describes this model's input and classes."""
    if tuple(evidence.input_shape) != tuple(input_shape):
        raise EvidenceMismatch(
            "evidence_model_mismatch",
            f"evidence input_shape {list(evidence.input_shape)} but the model takes "
            f"{list(input_shape)}",
        )
    check_signature_layers(model, evidence)


def as_float64(model: nn.Module, device: str) -> nn.Module:
    """A float64 copy of `model` in eval mode on `device` (the model is not modified)."""
    return copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()


@torch.no_grad()
def run_chunked(net: nn.Module, inputs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits of `inputs`, `CHUNK` at a time; EvidenceMismatch if they are not C per input."""
    outputs = [net(inputs[i : i + CHUNK]) for i in range(0, len(inputs), CHUNK)]
    logits = torch.cat(outputs) if outputs else torch.empty(0, num_classes)
    _check_logits(logits, num_classes)
    return logits


def _check_logits(logits: torch.Tensor, num_classes: int) -> None:
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise EvidenceMismatch(
            "evidence_model_mismatch",
            f"the model outputs {list(logits.shape[1:])} logits; evidence expects "
            f"{num_classes} classes",
        )


# --- fp32 with float64 fallback --------------------------------------------------------------


class _Magnitudes(threading.local):
    """Per thread: the rows' largest |activation| so far in the running pass (None: off)."""

    value: torch.Tensor | None = None


_magnitudes = _Magnitudes()
_hooked: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_hook_lock = threading.Lock()


def _record(module: nn.Module, args: object, output: object) -> None:
    seen = _magnitudes.value
    if seen is None or not isinstance(output, torch.Tensor) or output.dim() == 0:
        return
    if output.shape[0] != seen.shape[0]:
        return
    rows = output.detach().reshape(output.shape[0], -1)
    if rows.shape[1]:
        # NaN stays NaN (torch.maximum propagates it): such a row is recomputed
        largest = rows.abs().amax(dim=1)  # measured cheaper than vector_norm(inf) or aminmax
        _magnitudes.value = torch.maximum(seen, largest.to(seen.dtype))


def _hook(net: nn.Module) -> None:
    """Forward hooks on every leaf module of `net` that holds weights or buffers (conv, linear,
    norm: where magnitudes grow; activations and pooling do not enlarge them), once. They
    record only while a pass of this thread asks, so a model shared by threads can be hooked."""
    with _hook_lock:
        if net in _hooked:
            return
        for module in net.modules():
            leaf = next(module.children(), None) is None
            holds = next(module.parameters(recurse=False), None) is not None or (
                next(module.buffers(recurse=False), None) is not None
            )
            if leaf and holds:
                module.register_forward_hook(_record)
        _hooked.add(net)


def _fp32_net(model: nn.Module, device: str) -> nn.Module:
    """`model` itself when it is already an fp32 eval model on `device`, else an fp32 copy."""
    params = list(model.parameters())
    ready = not model.training and all(
        p.dtype == torch.float32 and p.device.type == torch.device(device).type for p in params
    )
    if ready:
        return model
    return copy.deepcopy(model).to(device=device, dtype=torch.float32).eval()


class _Tf32Off:
    """Counts the fp32 passes in flight (threads share torch's backend flags)."""

    lock = threading.Lock()
    depth = 0
    saved = (False, False)


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """IEEE float32 on CUDA for the duration: no TF32 in convolutions (cuDNN's default on
    Ampere and later) or matrix products, whose 10-bit mantissa exceeds the guard; on an H200
    every audit then failed and every pass was redone in float64. Other threads' work in the
    meantime runs without TF32 too; the flags come back when the last pass ends."""
    with _Tf32Off.lock:
        if _Tf32Off.depth == 0:
            _Tf32Off.saved = (
                torch.backends.cudnn.allow_tf32,
                torch.backends.cuda.matmul.allow_tf32,
            )
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        _Tf32Off.depth += 1
    try:
        yield
    finally:
        with _Tf32Off.lock:
            _Tf32Off.depth -= 1
            if _Tf32Off.depth == 0:
                cudnn, matmul = _Tf32Off.saved
                torch.backends.cudnn.allow_tf32 = cudnn
                torch.backends.cuda.matmul.allow_tf32 = matmul


@dataclass(frozen=True)
class ExactLogits:
    """Logits whose every argmax is the float64 argmax, with each row's error bound."""

    logits: torch.Tensor
    """float64 [N, C]: fp32 values, and float64 ones in recomputed rows."""
    guard: torch.Tensor
    """float64 [N]: bound on |logit - float64 logit| (0 in recomputed rows)."""
    exact_rows: int


@torch.no_grad()
def exact_logits(
    model: nn.Module,
    inputs: torch.Tensor,
    num_classes: int,
    device: str = "cpu",
    precision: Precision = "fast",
) -> ExactLogits:
    """The logits of float64 `inputs` (see the module docstring for the fp32 guard)."""
    n = len(inputs)
    if precision == "float64":
        logits = run_chunked(as_float64(model, device), inputs.to(device), num_classes)
        return ExactLogits(logits, torch.zeros(n, dtype=torch.float64, device=device), n)
    net = _fp32_net(model, device)
    _hook(net)
    outputs, magnitudes = [], []
    try:
        with ieee_fp32():
            for i in range(0, n, CHUNK):
                chunk = inputs[i : i + CHUNK].to(device=device, dtype=torch.float32)
                _magnitudes.value = chunk.abs().reshape(len(chunk), -1).amax(dim=1)
                out = net(chunk)
                outputs.append(out)
                magnitudes.append(_magnitudes.value)
    finally:
        _magnitudes.value = None
    logits = (torch.cat(outputs) if outputs else torch.empty(0, num_classes)).to(torch.float64)
    _check_logits(logits, num_classes)
    size = torch.cat(magnitudes).to(torch.float64) if magnitudes else torch.empty(0)
    size = torch.maximum(size, logits.abs().amax(dim=1)) if n else size
    guard = (1.0 + size) * 2.0**-GUARD_LOG2
    if num_classes >= 2 and n:
        top = logits.topk(2, dim=1).values
        margin = top[:, 0] - top[:, 1]
    else:
        margin = torch.full((n,), torch.inf, dtype=torch.float64, device=logits.device)
    safe = margin > 2 * guard  # NaN and inf compare False: recomputed
    redo = ~safe
    closest = torch.argsort(torch.where(safe, margin / guard, torch.inf), stable=True)
    audit = closest[: min(AUDIT_ROWS, int(safe.sum()))]
    redo[audit] = True
    rows = redo.nonzero().flatten()
    if len(rows):
        exact = _float64_rows(model, inputs[rows.cpu()].to(device), num_classes, device)
        error = (exact - logits[rows]).abs().amax(dim=1)
        finite = torch.isfinite(logits[rows]).all(dim=1)
        trusted = error <= guard[rows] / AUDIT_SLACK  # NaN compares False
        if not bool(trusted[finite].all()) or not bool(torch.isfinite(exact).all()):
            # every recomputed row measures fp32's error: one beyond what the guard assumes
            # means this model amplifies rounding, and no fp32 row of it is trusted
            return exact_logits(model, inputs, num_classes, device, "float64")
        logits[rows] = exact
        guard[rows] = 0.0
    return ExactLogits(logits, guard, len(rows))


def _float64_rows(
    model: nn.Module, inputs: torch.Tensor, num_classes: int, device: str
) -> torch.Tensor:
    """float64 logits of a few rows: the model's own modules run on float64 copies of its
    weights (cheaper than copying the whole module for a handful of rows)."""
    state = {
        name: t.detach().to(device=device, dtype=torch.float64) if t.is_floating_point() else t
        for name, t in {**dict(model.named_parameters()), **dict(model.named_buffers())}.items()
    }
    outputs = [
        torch.func.functional_call(model, state, (inputs[i : i + CHUNK],))
        for i in range(0, len(inputs), CHUNK)
    ]
    logits = torch.cat(outputs)
    _check_logits(logits, num_classes)
    return logits


def count_bit_matches(net: nn.Module, key: KeyMaterial, layer: str, device: str) -> int | None:
    """v1: how many of the key's signature bits sign(X · w) reproduces, in float64; None if
    `net` has no such layer or a different width."""
    params = dict(net.named_parameters())
    if layer not in params or params[layer].dim() < 2:
        return None
    weight = get_feature_vector(params[layer].detach().to(device=device, dtype=torch.float64))
    projection = key.projection(weight.numel()).to(device)
    bits = key.signature().to(device)
    return int(((projection @ weight > 0).to(torch.float64) == bits).sum().item())


class SummaryCache:
    """One model's float64 layer summaries (`signature.LayerSummary`), computed once per layer
    however many signatures are read from it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._found: dict[str, LayerSummary] = {}
        self._absent: set[str] = set()

    def get(self, names: Sequence[str]) -> dict[str, LayerSummary]:
        todo = [n for n in names if n not in self._found and n not in self._absent]
        found = float64_summaries(self.model, todo)
        self._found.update(found)
        self._absent.update(set(todo) - set(found))
        return {n: self._found[n] for n in names if n in self._found}


def signature_matches(
    model: nn.Module, evidence: Evidence, key: KeyMaterial, device: str, summaries: SummaryCache
) -> tuple[int | None, int]:
    """(matching bits or None, bits read) of `evidence`'s signature in `model`: v1 reads its
    one layer (None if absent); v2 every layer of the signature the model has."""
    if isinstance(evidence, EvidenceV1):
        matches = count_bit_matches(model, key, evidence.feature_layer, device)
        return matches, evidence.signature_bits
    names = [layer.name for layer in evidence.signature_layers]
    matched, read = count_matches(summaries.get(names), key.signature_keys())
    return (matched if read else None), read


@torch.no_grad()
def compute_stats(
    model: nn.Module,
    evidence: Evidence,
    device: str = "cpu",
    precision: Precision = "fast",
    priors: Sequence[Evidence] = (),
) -> FactorStats:
    """All three factors of `model` against `evidence` (the model is not modified)."""
    return compute_stats_and_carry(model, evidence, priors, device, precision)[0]


@torch.no_grad()
def compute_stats_and_carry(
    model: nn.Module,
    evidence: Evidence,
    priors: Sequence[Evidence],
    device: str = "cpu",
    precision: Precision = "fast",
) -> tuple[FactorStats, list[CarryStats]]:
    """The claim's factors and, in the same forward pass, how strongly the model carries each
    of `priors` (evidence of the same input shape and classes)."""
    check_signature_layers(model, evidence)  # EvidenceMismatch before any work
    key = KeyMaterial.from_evidence(evidence)
    k, c, n = evidence.trigger_count, evidence.num_classes, evidence.signature_bits
    prior_keys = _prior_keys(priors, c)
    inputs = torch.cat(
        [key.trigger_inputs(), key.probe_inputs(), *(pk.trigger_inputs() for pk in prior_keys)]
    )
    result = exact_logits(model, inputs, c, device, precision)
    p = evidence.probe_count
    trigger_logits, probe_logits = result.logits[:k], result.logits[k : k + p]

    labels = key.trigger_labels().to(trigger_logits.device)
    correct = int((trigger_logits.argmax(dim=1) == labels).sum().item())
    summaries = SummaryCache(model)
    matches, read = signature_matches(model, evidence, key, device, summaries)
    if matches is None or read != n:  # unreachable: check_signature_layers above raised
        raise EvidenceMismatch("evidence_model_mismatch", "no signature layer")

    reference = torch.tensor(
        evidence.reference_logits, dtype=torch.float64, device=probe_logits.device
    )
    deviation = float((probe_logits - reference).abs().max().item())
    slack = float(result.guard[k : k + p].max().item())
    stats = FactorStats(
        trigger_acc=correct / k,
        trigger_correct=correct,
        trigger_count=k,
        num_classes=c,
        p_value=p_value(correct, k, c),
        log2_p_value=round(log2_tail(correct, k, c), 3),
        feat_dist=(n - matches) / n,
        feat_matches=matches,
        signature_bits=n,
        feat_p_value=p_value(matches, n, 2),
        log2_feat_p_value=round(log2_tail(matches, n, 2), 3),
        logit_stat=round(deviation, LOGIT_DECIMALS) + 0.0,  # -0.0 -> 0.0
        logit_stat_error=slack + 10.0**-LOGIT_DECIMALS if slack else 0.0,
        exact_rows=result.exact_rows,
    )
    carries = _carries(model, priors, prior_keys, result.logits[k + p :], device, summaries)
    return stats, carries


def _prior_keys(priors: Sequence[Evidence], num_classes: int) -> list[KeyMaterial]:
    if any(ev.num_classes != num_classes for ev in priors):
        raise ValueError("priors must share one class count")
    return [KeyMaterial.from_evidence(ev) for ev in priors]


def _carries(
    model: nn.Module,
    priors: Sequence[Evidence],
    keys: Sequence[KeyMaterial],
    logits: torch.Tensor,
    device: str,
    summaries: SummaryCache | None = None,
) -> list[CarryStats]:
    predictions = logits.argmax(dim=1)
    summaries = summaries or SummaryCache(model)
    out = []
    start = 0
    for ev, key in zip(priors, keys, strict=True):
        labels = key.trigger_labels().to(predictions.device)
        hits = predictions[start : start + ev.trigger_count] == labels
        start += ev.trigger_count
        matches, read = signature_matches(model, ev, key, device, summaries)
        out.append(
            CarryStats(
                trigger_correct=int(hits.sum().item()),
                trigger_count=ev.trigger_count,
                num_classes=ev.num_classes,
                feat_matches=matches,
                signature_bits=read,
            )
        )
    return out


@torch.no_grad()
def compute_carry_stats(
    model: nn.Module,
    priors: Sequence[Evidence],
    device: str = "cpu",
    precision: Precision = "fast",
) -> list[CarryStats]:
    """For each earlier registration's evidence (same input shape and classes as `model`), how
    strongly `model` carries its watermark: all trigger sets in one chunked pass."""
    if not priors:
        return []
    keys = _prior_keys(priors, priors[0].num_classes)
    inputs = torch.cat([key.trigger_inputs() for key in keys])
    result = exact_logits(model, inputs, priors[0].num_classes, device, precision)
    return _carries(model, priors, keys, result.logits, device)


def logit_in_band(stats: FactorStats, profile: Thresholds) -> bool:
    """Whether the float64 `logit_stat` lies in the band; LogitUndecided if the interval
    `logit_stat ± logit_stat_error` cannot tell."""
    low, high = profile.logit_band_low, profile.logit_band_high
    value, error = stats.logit_stat, stats.logit_stat_error
    if low <= value - error and value + error <= high:
        return True
    if value + error < low or value - error > high or error == 0.0:
        return False
    raise LogitUndecided(f"logit_stat {value} ± {error} straddles [{low}, {high}]")


def judge(stats: FactorStats, profile: Thresholds, floors: Floors) -> str | None:
    """None if every factor passes the profile and the chain's floors, else the failing
    factors' reasons joined by ';'. LogitUndecided: see `decide`."""
    failures = []
    if stats.trigger_acc < profile.tau_input:
        failures.append("trigger_acc_below_tau_input")
    if not is_tail_within(
        stats.trigger_correct, stats.trigger_count, stats.num_classes, floors.trigger_p_log2
    ):
        failures.append("trigger_p_above_floor")
    if stats.feat_dist > profile.tau_feat:
        failures.append("feat_dist_above_tau_feat")
    if not is_tail_within(stats.feat_matches, stats.signature_bits, 2, floors.feature_p_log2):
        failures.append("feat_p_above_floor")
    if not logit_in_band(stats, profile):
        failures.append("logit_stat_outside_band")
    if max(-profile.logit_band_low, profile.logit_band_high) > floors.max_logit_band:
        failures.append("logit_band_above_floor")
    return ";".join(failures) or None


def decide(
    stats: FactorStats,
    profile: Thresholds,
    floors: Floors,
    exact: Callable[[], FactorStats],
) -> tuple[str | None, FactorStats]:
    """`judge`, recomputing the statistics with `exact()` (float64) when the fast pass leaves
    the logit band undecided; the reason and the statistics it was decided on."""
    try:
        return judge(stats, profile, floors), stats
    except LogitUndecided:
        stats = exact()
        return judge(stats, profile, floors), stats
