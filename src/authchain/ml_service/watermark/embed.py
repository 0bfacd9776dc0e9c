"""Embedding the watermark while training, and writing the evidence (`multi_factor_v2`, or
`multi_factor_v1` where a test or an old network asks for it).

The three factors are embedded together (see `train.py` for the loop):
- input factor: the K key-derived trigger images are mixed into every batch with their
  key-derived labels, so the network memorises them (Adi et al. 2018);
- feature factor: a regulariser pulls the signature's readouts to their bits' sides. v2: a
  hinge on the n readouts spread over every spatial conv layer (`signature.py`); v1: BCE
  between sigmoid(X · w) and the bits, w one layer averaged over output channels (Uchida et
  al. 2017);
- logit factor: nothing to embed; the evidence records the final model's logits on the probes.

`make_evidence` is also how an owner produces evidence for a model trained without a
watermark (`authchain model evidence`): such evidence is honest and fails verification.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import blake3
import torch
from torch import nn
from torch.nn import functional as F

from authchain.floors import Floors, loosest_taus
from authchain.ml_service.models import Architecture
from authchain.ml_service.watermark.evidence import (
    SCHEME_V1,
    SCHEME_V2,
    Evidence,
    EvidenceV1,
    EvidenceV2,
    KeyMaterial,
    SignatureLayer,
    get_feature_vector,
)
from authchain.ml_service.watermark.signature import (
    SignatureRegulariser,
    allocate_bits,
    spatial_layers,
)
from authchain.ml_service.watermark.verify import (
    FactorStats,
    Thresholds,
    check_signature_layers,
    get_layer_weight,
    judge,
)


@dataclass(frozen=True)
class EmbedSpec:
    """Which scheme, and how big each factor is."""

    trigger_count: int = 100
    signature_bits: int = 2048
    """v2: 2048 bits over every spatial conv layer (the chain's minimum is 1024); v1: 128."""
    probe_count: int = 32
    signature_layers: tuple[str, ...] | None = None
    """v2: the layers the signature is spread over (None: every spatial conv weight)."""
    signature_weight: float = 1.0
    """Weight of the signature regulariser in the training loss (`default_signature_weight`
    gives each scheme's and architecture's)."""
    signature_margin: float = 3.0
    """v2: how far past zero the embedding pulls each readout, in units of the readouts'
    spread when embedding began (the robustness experiments chose 3: see docs/SECURITY.md)."""
    scheme_id: str = SCHEME_V2
    feature_layer: str = "layer3.conv2.weight"
    """v1 only: the one layer its signature is read from."""


def v1_spec(**changes: object) -> EmbedSpec:
    """The `multi_factor_v1` spec as it was: 128 bits in `layer3.conv2.weight`, weight 0.5."""
    fields: dict[str, object] = {
        "scheme_id": SCHEME_V1, "signature_bits": 128, "signature_weight": 0.5, **changes,
    }  # fmt: skip
    return EmbedSpec(**fields)  # type: ignore[arg-type]


def default_signature_weight(arch: str, scheme_id: str = SCHEME_V2) -> float:
    """The signature regulariser's weight. v2: 1 for every architecture (the hinge is
    normalised by the readouts' spread, so one weight suits all; on the tiny SmallResNet, 2
    cost a point of accuracy and a few triggers, and embedded no more bits). v1: 0.5 for the seed's
    SmallResNet; 2 for timm models, where 0.5 left EfficientNet short of the signature floor in
    6 epochs and left the README's 4-epoch test_resnet example at the floor's edge."""
    if scheme_id == SCHEME_V2:
        return 1.0
    return 0.5 if arch == "small_resnet" else 2.0


def signature_layout(model: nn.Module, spec: EmbedSpec) -> tuple[tuple[str, int], ...]:
    """v2: (layer, bits) for `model`: `spec.signature_layers` or every spatial conv weight,
    with the bits spread evenly; ValueError if the model has no such layer."""
    names = list(spec.signature_layers or spatial_layers(model))
    if not names:
        raise ValueError(
            "the model has no spatial conv weight (k x k, k > 1) to carry a multi_factor_v2 "
            "signature"
        )
    counts = allocate_bits(spec.signature_bits, len(names))
    return tuple((name, n) for name, n in zip(names, counts, strict=True) if n)  # n < layers


def new_key_material(
    owner: bytes,
    arch: Architecture,
    num_classes: int,
    spec: EmbedSpec,
    key_seed: bytes | None = None,
    model: nn.Module | None = None,
) -> KeyMaterial:
    """Key material for `owner` with a fresh random key seed (or the given one). v2 spreads the
    signature over `model`'s layers, so it needs the model."""
    c, h, w = arch.input_shape
    layers: tuple[tuple[str, int], ...] = ()
    if spec.scheme_id == SCHEME_V2:
        if model is None:
            raise ValueError("a multi_factor_v2 key needs the model its signature is spread over")
        layers = signature_layout(model, spec)
    return KeyMaterial(
        owner=owner,
        key_seed=key_seed if key_seed is not None else secrets.token_bytes(32),
        input_shape=(c, h, w),
        num_classes=num_classes,
        trigger_count=spec.trigger_count,
        signature_bits=spec.signature_bits,
        probe_count=spec.probe_count,
        scheme_id=spec.scheme_id,
        signature_layers=layers,
    )


def signature_loss(model: nn.Module, key: KeyMaterial, layer: str) -> torch.Tensor:
    """v1: BCE between sigmoid(X · w) and the signature bits (Uchida's embedding regulariser)."""
    weight = get_feature_vector(get_layer_weight(model, layer))
    projection = key.projection(weight.numel()).to(weight.dtype)
    return F.binary_cross_entropy_with_logits(projection @ weight, key.signature().to(weight.dtype))


def signature_regulariser(
    model: nn.Module, key: KeyMaterial, spec: EmbedSpec
) -> Callable[[], torch.Tensor]:
    """The signature's embedding loss for `model` (already weighted), called once per step.
    Built from the model as it is now: v2 normalises its hinge by the readouts' spread here."""
    if key.scheme_id == SCHEME_V1:
        return lambda: spec.signature_weight * signature_loss(model, key, spec.feature_layer)
    hinge = SignatureRegulariser(model, key.signature_keys(), spec.signature_margin)
    return lambda: spec.signature_weight * hinge()


def combined_regulariser(
    model: nn.Module, keys: Sequence[KeyMaterial], spec: EmbedSpec
) -> Callable[[], torch.Tensor]:
    """The summed signature losses of `keys` (a primary and its spares), one call per step."""
    parts = [signature_regulariser(model, key, spec) for key in keys]
    if len(parts) == 1:
        return parts[0]
    return lambda: torch.stack([part() for part in parts]).sum()


SPARE_DOMAIN = "authchain/spare-key/v1"
DEFAULT_SPARES = 3
"""Spare watermarks `model train` and the hook embed beside the primary (issue 22)."""


def spare_keys(primary: KeyMaterial, secret: bytes, count: int) -> list[KeyMaterial]:
    """`count` spare keys: the primary's shape (owner, scheme, K, n, layers), each with its own
    key seed derived from the owner's 32-byte spare `secret`, never from the primary's seed
    (which every validator reads)."""
    if len(secret) != 32:
        raise ValueError("the spare secret is 32 bytes")
    return [
        dataclasses.replace(
            primary,
            key_seed=blake3.blake3(f"{SPARE_DOMAIN}/{i}".encode(), key=secret).digest(),
        )
        for i in range(count)
    ]


@torch.no_grad()
def make_evidence(
    model: nn.Module, key: KeyMaterial, arch: Architecture, spec: EmbedSpec
) -> Evidence:
    """Evidence for `model` under `key`: parameters plus the model's reference logits."""
    net = copy.deepcopy(model).to(torch.float64).eval()
    reference = [[float(v) for v in row] for row in net(key.probe_inputs()).tolist()]
    common = {
        "owner": key.owner.hex(), "key_seed": key.key_seed.hex(), "arch": arch.name,
        "num_classes": key.num_classes, "input_shape": key.input_shape,
        "trigger_count": key.trigger_count, "signature_bits": key.signature_bits,
    }  # fmt: skip
    evidence: Evidence
    if key.scheme_id == SCHEME_V1:
        evidence = EvidenceV1(
            scheme_id=SCHEME_V1, **common, feature_layer=spec.feature_layer,
            probe_count=key.probe_count, reference_logits=reference,
        )  # fmt: skip
    else:
        layers = tuple(SignatureLayer(name=n, bits=b) for n, b in key.signature_layers)
        evidence = EvidenceV2(
            scheme_id=SCHEME_V2, **common, signature_layers=layers,
            probe_count=key.probe_count, reference_logits=reference,
        )  # fmt: skip
    check_signature_layers(net, evidence)  # fail early if a layer does not exist
    return evidence


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
