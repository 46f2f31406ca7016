"""No defense: plain cross-entropy training (the baseline of every thesis table)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustness.defenses.base import BatchLoss, Defense


class NoDefense(Defense):
    name = "none"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        logits = model(x)
        return BatchLoss(loss=F.cross_entropy(logits, y), logits=logits)
