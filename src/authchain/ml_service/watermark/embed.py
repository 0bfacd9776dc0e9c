"""Embedding `multi_factor_v1` while training, and writing the evidence.

The three factors are embedded together (see `train.py` for the loop):
- input factor: the K key-derived trigger images are mixed into every batch with their
  key-derived labels, so the network memorises them (Adi et al. 2018);
- feature factor: a regulariser pulls sign(X · w) towards the signature bits, where w is the
  feature layer averaged over output channels (Uchida et al. 2017);
- logit factor: nothing to embed; the evidence records the final model's logits on the probes.

`make_evidence` is also how an owner produces evidence for a model trained without a
watermark (`authchain model evidence`): such evidence is honest and fails verification.
"""

from __future__ import annotations

import copy
import math
import secrets
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from authchain.floors import Floors, loosest_taus
from authchain.ml_service.models import Architecture
from authchain.ml_service.watermark.evidence import (
    SCHEME_ID,
    Evidence,
    KeyMaterial,
    get_feature_vector,
)
from authchain.ml_service.watermark.verify import FactorStats, Thresholds, get_layer_weight, judge


@dataclass(frozen=True)
class EmbedSpec:
    """How big each factor is."""

    trigger_count: int = 100
    signature_bits: int = 128
    probe_count: int = 32
    feature_layer: str = "layer3.conv2.weight"
    signature_weight: float = 0.5
    """Weight of the signature regulariser in the training loss (`default_signature_weight`
    gives each architecture's)."""


def default_signature_weight(arch: str) -> float:
    """The signature regulariser's weight for an architecture: 0.5 for the seed's SmallResNet;
    2 for timm models, where 0.5 left EfficientNet short of the signature floor in 6 epochs and
    left the README's 4-epoch test_resnet example at the floor's edge (2^-32.3 in 3 of 10 runs,
    one run above it; at 2, no run of 40 was above 2^-48)."""
    return 0.5 if arch == "small_resnet" else 2.0


def new_key_material(
    owner: bytes,
    arch: Architecture,
    num_classes: int,
    spec: EmbedSpec,
    key_seed: bytes | None = None,
) -> KeyMaterial:
    """Key material for `owner` with a fresh random key seed (or the given one)."""
    c, h, w = arch.input_shape
    return KeyMaterial(
        owner=owner,
        key_seed=key_seed if key_seed is not None else secrets.token_bytes(32),
        input_shape=(c, h, w),
        num_classes=num_classes,
        trigger_count=spec.trigger_count,
        signature_bits=spec.signature_bits,
        probe_count=spec.probe_count,
    )


def signature_loss(model: nn.Module, key: KeyMaterial, layer: str) -> torch.Tensor:
    """BCE between sigmoid(X · w) and the signature bits (Uchida's embedding regulariser)."""
    weight = get_feature_vector(get_layer_weight(model, layer))
    projection = key.projection(weight.numel()).to(weight.dtype)
    return F.binary_cross_entropy_with_logits(projection @ weight, key.signature().to(weight.dtype))


@torch.no_grad()
def make_evidence(
    model: nn.Module, key: KeyMaterial, arch: Architecture, spec: EmbedSpec
) -> Evidence:
    """Evidence for `model` under `key`: parameters plus the model's reference logits."""
    net = copy.deepcopy(model).to(torch.float64).eval()
    get_layer_weight(net, spec.feature_layer)  # fail early if the layer does not exist
    reference = net(key.probe_inputs())
    return Evidence(
        scheme_id=SCHEME_ID,
        owner=key.owner.hex(),
        key_seed=key.key_seed.hex(),
        arch=arch.name,
        num_classes=key.num_classes,
        input_shape=key.input_shape,
        trigger_count=key.trigger_count,
        signature_bits=key.signature_bits,
        feature_layer=spec.feature_layer,
        probe_count=key.probe_count,
        reference_logits=[[float(v) for v in row] for row in reference.tolist()],
    )


def recommend_profile(stats: FactorStats, floors: Floors) -> Thresholds | None:
    """Thresholds this model passes with a margin and that never loosen the chain's floors;
    None if the model does not pass the floors at all (then nothing should be registered).

    tau_input sits 0.05 below the measured trigger accuracy (at most the seed's 0.9), tau_feat
    0.1 above the bit error rate (at least the seed's 0.2), each clamped to what the floors
    allow for this evidence's strength; the logit band is the widest the chain allows: the
    registered bytes reproduce the reference logits exactly.
    """
    if judge(stats, Thresholds(0.0, 1.0, 0.0, floors.max_logit_band), floors) is not None:
        return None
    loosest = loosest_taus(floors, stats.trigger_count, stats.signature_bits, stats.num_classes)
    if loosest is None:
        return None
    floor_input, floor_feat = loosest
    tau_input = min(0.9, math.floor((stats.trigger_acc - 0.05) * 20) / 20)
    tau_input = min(max(tau_input, floor_input), stats.trigger_acc)
    tau_feat = max(0.2, math.ceil((stats.feat_dist + 0.1) * 20) / 20)
    tau_feat = max(min(tau_feat, floor_feat), stats.feat_dist)
    band = floors.max_logit_band
    profile = Thresholds(tau_input, tau_feat, -band, band)
    return profile if judge(stats, profile, floors) is None else None
