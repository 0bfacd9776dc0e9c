"""Training data: scikit-learn's bundled digits (no download), shaped for 3×32×32 models.

`load_digits` ships 1,797 8×8 grey-level images (values 0..16) inside scikit-learn. They are
scaled to [0, 1], upsampled bilinearly to 32×32 and repeated over three channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    """Inputs (N×3×32×32 float32 in [0, 1]) and labels (N int64)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


def load_digits_split(size: int = 32, channels: int = 3) -> tuple[Dataset, Dataset]:
    """A fixed train/test split of the upsampled digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.repeat(1, channels, 1, 1).contiguous()
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1797))
    n_test = int(len(y) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return Dataset(x[train], y[train]), Dataset(x[test], y[test])
