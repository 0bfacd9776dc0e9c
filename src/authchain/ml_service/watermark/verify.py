"""`multi_factor_v1` verification (seed `watermark/verify.py`, which only pretended).

Three factors, all computed in float64 on key-derived inputs (see `evidence.py`):

1. input factor   `trigger_acc`: accuracy on the K trigger inputs against the K trigger labels;
                  `p_value` = P[Binomial(K, 1/C) >= correct], the chance of doing that well
                  without the key. Passes if `trigger_acc >= tau_input` and `p_value` is at or
                  below the chain's floor.
2. feature factor `feat_dist`: bit error rate of sign(X · w) against the n signature bits, where
                  w is `feature_layer` averaged over output channels (Uchida et al. 2017) and
                  X the key-derived projection; `feat_p_value` = P[Binomial(n, 1/2) >= matches].
                  Passes if `feat_dist <= tau_feat` and `feat_p_value` is at or below its floor.
3. logit factor   `logit_stat`: the largest |logit − reference logit| over every probe and
                  class. Passes if it lies in [logit_band_low, logit_band_high]. It binds the
                  evidence to this exact function (a different function cannot stay within the
                  band on every probe and class); it says nothing about who owns it, because an
                  owner makes the reference logits from the very model they register.

A claim holds only if all three pass. The floor decisions are exact integer arithmetic
(`authchain.floors`). Statistics are deterministic: float64 arithmetic, inputs run through the
network in fixed-size chunks, and `logit_stat` rounded to `LOGIT_DECIMALS` places so that
summation-order noise (thread count, CPU vs GPU) cannot change a reported value or a verdict.

Derivative detection (`compute_carry_stats`) runs the trigger sets of many earlier
registrations through the candidate in one batched pass, and reads their signatures from its
weights with one projection each.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from authchain.floors import Floors, is_tail_within, log2_tail, p_value
from authchain.ml_service.errors import EvidenceMismatch
from authchain.ml_service.watermark.evidence import Evidence, KeyMaterial, get_feature_vector

LOGIT_DECIMALS = 9
CHUNK = 256
"""Inputs per forward pass: bounds memory whatever K is, and is the same on every validator."""


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


@dataclass(frozen=True)
class CarryStats:
    """How strongly a model carries one earlier registration's watermark."""

    trigger_correct: int
    trigger_count: int
    num_classes: int
    feat_matches: int | None
    """None when the model has no weight of the registration's feature layer and width."""
    signature_bits: int

    def carries(self, floor_log2: int) -> bool:
        """Either factor at or below 2^-floor_log2: the watermark is there."""
        if is_tail_within(self.trigger_correct, self.trigger_count, self.num_classes, floor_log2):
            return True
        return self.feat_matches is not None and is_tail_within(
            self.feat_matches, self.signature_bits, 2, floor_log2
        )

    def describe(self) -> str:
        trig = log2_tail(self.trigger_correct, self.trigger_count, self.num_classes)
        text = f"{self.trigger_correct}/{self.trigger_count} triggers (p = 2^{trig:.1f})"
        if self.feat_matches is not None:
            feat = log2_tail(self.feat_matches, self.signature_bits, 2)
            text += f", {self.feat_matches}/{self.signature_bits} bits (p = 2^{feat:.1f})"
        return text


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


def check_model_fits(model: nn.Module, input_shape: tuple[int, ...], evidence: Evidence) -> None:
    """EvidenceMismatch unless the evidence describes this model's input and classes."""
    if tuple(evidence.input_shape) != tuple(input_shape):
        raise EvidenceMismatch(
            "evidence_model_mismatch",
            f"evidence input_shape {list(evidence.input_shape)} but the model takes "
            f"{list(input_shape)}",
        )
    get_layer_weight(model, evidence.feature_layer)


def as_float64(model: nn.Module, device: str) -> nn.Module:
    """A float64 copy of `model` in eval mode on `device` (the model is not modified)."""
    return copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()


@torch.no_grad()
def run_chunked(net: nn.Module, inputs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits of `inputs`, `CHUNK` at a time; EvidenceMismatch if they are not C per input."""
    outputs = [net(inputs[i : i + CHUNK]) for i in range(0, len(inputs), CHUNK)]
    logits = torch.cat(outputs) if outputs else torch.empty(0, num_classes)
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise EvidenceMismatch(
            "evidence_model_mismatch",
            f"the model outputs {list(logits.shape[1:])} logits; evidence expects "
            f"{num_classes} classes",
        )
    return logits


def count_bit_matches(net: nn.Module, key: KeyMaterial, layer: str, device: str) -> int | None:
    """How many of the key's signature bits sign(X · w) reproduces; None if `net` has no such
    layer or a different width."""
    params = dict(net.named_parameters())
    if layer not in params or params[layer].dim() < 2:
        return None
    weight = get_feature_vector(params[layer].detach())
    projection = key.projection(weight.numel()).to(device)
    bits = key.signature().to(device)
    return int(((projection @ weight > 0).to(torch.float64) == bits).sum().item())


@torch.no_grad()
def compute_stats(model: nn.Module, evidence: Evidence, device: str = "cpu") -> FactorStats:
    """All three factors of `model` against `evidence` (the model is not modified)."""
    key = KeyMaterial.from_evidence(evidence)
    net = as_float64(model, device)
    get_layer_weight(net, evidence.feature_layer)  # EvidenceMismatch before any work
    k, c, n = evidence.trigger_count, evidence.num_classes, evidence.signature_bits

    triggers = key.trigger_inputs().to(device)
    probes = key.probe_inputs().to(device)
    logits = run_chunked(net, torch.cat([triggers, probes]), c)
    trigger_logits, probe_logits = logits[:k], logits[k:]

    labels = key.trigger_labels().to(device)
    correct = int((trigger_logits.argmax(dim=1) == labels).sum().item())
    matches = count_bit_matches(net, key, evidence.feature_layer, device)
    if matches is None:  # unreachable: get_layer_weight above raised
        raise EvidenceMismatch("evidence_model_mismatch", "no feature layer")

    reference = torch.tensor(evidence.reference_logits, dtype=torch.float64, device=device)
    deviation = float((probe_logits - reference).abs().max().item())
    return FactorStats(
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
    )


@torch.no_grad()
def compute_carry_stats(
    model: nn.Module, priors: Sequence[Evidence], device: str = "cpu"
) -> list[CarryStats]:
    """For each earlier registration's evidence (same input shape and classes as `model`), how
    strongly `model` carries its watermark: all trigger sets in one chunked pass."""
    if not priors:
        return []
    net = as_float64(model, device)
    keys = [KeyMaterial.from_evidence(ev) for ev in priors]
    classes = {ev.num_classes for ev in priors}
    if len(classes) != 1:
        raise ValueError("priors must share one class count")
    inputs = torch.cat([key.trigger_inputs() for key in keys]).to(device)
    predictions = run_chunked(net, inputs, classes.pop()).argmax(dim=1)
    out = []
    start = 0
    for ev, key in zip(priors, keys, strict=True):
        labels = key.trigger_labels().to(device)
        hits = predictions[start : start + ev.trigger_count] == labels
        start += ev.trigger_count
        out.append(
            CarryStats(
                trigger_correct=int(hits.sum().item()),
                trigger_count=ev.trigger_count,
                num_classes=ev.num_classes,
                feat_matches=count_bit_matches(net, key, ev.feature_layer, device),
                signature_bits=ev.signature_bits,
            )
        )
    return out


def judge(stats: FactorStats, profile: Thresholds, floors: Floors) -> str | None:
    """None if every factor passes the profile and the chain's floors, else the failing
    factors' reasons joined by ';'."""
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
    if not profile.logit_band_low <= stats.logit_stat <= profile.logit_band_high:
        failures.append("logit_stat_outside_band")
    if max(-profile.logit_band_low, profile.logit_band_high) > floors.max_logit_band:
        failures.append("logit_band_above_floor")
    return ";".join(failures) or None
