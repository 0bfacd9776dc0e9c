"""`SmallResNet` (seed `models/resnet.py`): a CIFAR-sized residual network.

Input 3×32×32; a 3×3 stem with `stem_width` channels, then three basic residual blocks of
`widths` channels (the second and third halve the resolution), global average pooling and a
linear classifier. The seed's model is `SmallResNetConfig()`: stem 32, blocks 64/128/128,
10 classes. `SmallResNetConfig.tiny()` is the same shape at a quarter of the width, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from authchain.ml_service.models.registry import register_architecture


@dataclass(frozen=True)
class SmallResNetConfig:
    """Widths and classes of a `SmallResNet`."""

    num_classes: int = 10
    stem_width: int = 32
    widths: tuple[int, int, int] = (64, 128, 128)

    @classmethod
    def tiny(cls) -> SmallResNetConfig:
        """A few thousand parameters: trains in seconds on a CPU."""
        return cls(num_classes=10, stem_width=8, widths=(16, 32, 32))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection (1×1 projection when shapes change)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@register_architecture("small_resnet", SmallResNetConfig, input_shape=(3, 32, 32))
class SmallResNet(nn.Module):
    """The seed's example model."""

    def __init__(self, config: SmallResNetConfig) -> None:
        super().__init__()
        w1, w2, w3 = config.widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, config.stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(config.stem_width),
            nn.ReLU(),
        )
        self.layer1 = BasicBlock(config.stem_width, w1, 1)
        self.layer2 = BasicBlock(w1, w2, 2)
        self.layer3 = BasicBlock(w2, w3, 2)
        self.fc = nn.Linear(w3, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate activations."""
        out = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.features(x))
        return logits
