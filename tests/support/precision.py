"""Models built so that fp32 alone reaches the wrong verdict: the float64 fallback's test cases
(`tests/unit/test_precision.py`, and `expts/devices.py` on every device)."""

from __future__ import annotations

import torch
from torch import nn

from authchain.ml_service.models import SmallResNet, SmallResNetConfig
from authchain.ml_service.watermark.evidence import Evidence, KeyMaterial
from authchain.ml_service.watermark.verify import as_float64


class NearTie(SmallResNet):
    """Every logit is 1000 + 1e-7 x the trained logit: float64 sees the trained argmax, fp32
    (spacing 6e-5 at 1000) sees ties everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = 1000.0 + 1e-7 * self.fc(self.features(x))
        return logits


class Amplifier(SmallResNet):
    """Adds 1e7 x (f - (3f)/3): zero in exact arithmetic, ~1e-9 in float64, but ~1 in fp32,
    where (3f)/3 rounds differently from f. Its activations stay small, so the guard alone
    would trust fp32; the audit rows must catch it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        mix = torch.Generator().manual_seed(0)
        signs = torch.randint(0, 2, (f.shape[1], self.fc.out_features), generator=mix) * 2 - 1
        noise = (f - (f * 3.0) / 3.0) @ signs.to(f.device, f.dtype)
        logits: torch.Tensor = self.fc(f) + 1e7 * noise
        return logits


def rebuilt(kind: type[SmallResNet], model: nn.Module) -> SmallResNet:
    """A tiny SmallResNet's weights in the adversarial forward `kind`, in eval mode."""
    adversarial = kind(SmallResNetConfig.tiny())
    adversarial.load_state_dict(model.state_dict())
    return adversarial.eval()


def with_own_reference(model: nn.Module, evidence: Evidence) -> Evidence:
    """The evidence, its reference logits remade from `model` in float64 (as an owner would)."""
    key = KeyMaterial.from_evidence(evidence)
    with torch.no_grad():
        reference = as_float64(model, "cpu")(key.probe_inputs())
    return evidence.model_copy(update={"reference_logits": reference.tolist()})
