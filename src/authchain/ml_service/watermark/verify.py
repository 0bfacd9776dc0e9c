"""`multi_factor_v1` verification (seed `watermark/verify.py`, which only pretended).

Three factors, all computed in float64 on key-derived inputs (see `evidence.py`):

1. input factor   `trigger_acc`: accuracy on the K trigger inputs against the K trigger labels;
                  `p_value` = P[Binomial(K, 1/C) >= correct], the chance of doing that well
                  by luck. Passes if `trigger_acc >= tau_input`.
2. feature factor `feat_dist`: bit error rate of sign(X · w) against the signature bits, where
                  w is `feature_layer` averaged over output channels (Uchida et al. 2017) and
                  X the key-derived projection. Passes if `feat_dist <= tau_feat`.
3. logit factor   `logit_stat`: mean of (logits − reference_logits) over the probe inputs.
                  Passes if it lies in [logit_band_low, logit_band_high].

A claim holds only if all three pass. Statistics are deterministic: float64 arithmetic, and
`logit_stat` rounded to `LOGIT_DECIMALS` places so that summation-order noise (thread count,
CPU vs GPU) cannot change a reported value or a verdict.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from authchain.ml_service.errors import EvidenceMismatch
from authchain.ml_service.watermark.evidence import Evidence, KeyMaterial, get_feature_vector

LOGIT_DECIMALS = 9


@dataclass(frozen=True)
class FactorStats:
    """The three factors' statistics for one (model, evidence) pair."""

    trigger_acc: float
    trigger_correct: int
    trigger_count: int
    p_value: float
    feat_dist: float
    logit_stat: float


@dataclass(frozen=True)
class Thresholds:
    """A `wm_profile`."""

    tau_input: float
    tau_feat: float
    logit_band_low: float
    logit_band_high: float


def compute_binomial_tail(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Binomial(n, p), summed exactly term by term."""
    if k <= 0:
        return 1.0
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


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


@torch.no_grad()
def compute_stats(model: nn.Module, evidence: Evidence, device: str = "cpu") -> FactorStats:
    """All three factors of `model` against `evidence` (the model is not modified)."""
    key = KeyMaterial.from_evidence(evidence)
    net = copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()

    triggers = key.trigger_inputs().to(device)
    probes = key.probe_inputs().to(device)
    logits = net(torch.cat([triggers, probes]))
    if logits.dim() != 2 or logits.shape[1] != evidence.num_classes:
        raise EvidenceMismatch(
            "evidence_model_mismatch",
            f"the model outputs {list(logits.shape[1:])} logits; evidence expects "
            f"{evidence.num_classes} classes",
        )
    trigger_logits, probe_logits = logits[: len(triggers)], logits[len(triggers) :]

    labels = key.trigger_labels().to(device)
    correct = int((trigger_logits.argmax(dim=1) == labels).sum().item())
    k = evidence.trigger_count

    weight = get_feature_vector(get_layer_weight(net, evidence.feature_layer))
    projected = key.projection(weight.numel()).to(device) @ weight
    bits = key.signature().to(device)
    errors = int(((projected > 0).to(torch.float64) != bits).sum().item())

    reference = torch.tensor(evidence.reference_logits, dtype=torch.float64, device=device)
    logit_stat = round(float((probe_logits - reference).mean().item()), LOGIT_DECIMALS)

    return FactorStats(
        trigger_acc=correct / k,
        trigger_correct=correct,
        trigger_count=k,
        p_value=compute_binomial_tail(correct, k, 1.0 / evidence.num_classes),
        feat_dist=errors / evidence.signature_bits,
        logit_stat=logit_stat + 0.0,  # -0.0 -> 0.0
    )


def judge(stats: FactorStats, profile: Thresholds) -> str | None:
    """None if every factor passes, else the failing factors' reasons joined by ';'."""
    failures = []
    if stats.trigger_acc < profile.tau_input:
        failures.append("trigger_acc_below_tau_input")
    if stats.feat_dist > profile.tau_feat:
        failures.append("feat_dist_above_tau_feat")
    if not profile.logit_band_low <= stats.logit_stat <= profile.logit_band_high:
        failures.append("logit_stat_outside_band")
    return ";".join(failures) or None
