"""Adversarial training (Goodfellow et al. 2015), thesis eq. 2.22, methods.md §5.

Each batch is trained on a mixture of clean and FGSM examples:
loss = CE(f(x), y) + λ·CE(f(x + r), y) with r = ε·sign(∇ₓ CE(f(x), y)) detached. The input
gradient comes from the same forward pass as the clean loss (its graph is kept for the
parameter update), so AT costs two forward and two backward passes per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustness.defenses.base import BatchLoss, Defense
from robustness.errors import ConfigError


@dataclass(frozen=True)
class ATParams:
    # l∞ radius of the FGSM step: 0.1 in the chapter 4 comparison (§4.6); chapter 3 (§3.5.1)
    # selected 0.2 on validation data — pass eps=0.2 to reproduce Table 3.1.
    eps: float = 0.1
    weight: float = 1.0  # λ of eq. 2.22 (chapter 3 code: 1.0)
    clip: bool = False  # clamp x + r into [0, 1]; the chapter 3 code did not

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ConfigError(f"eps must be a finite number >= 0, got {self.eps}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"weight must be a finite number >= 0, got {self.weight}")


class AdversarialTraining(Defense):
    """Clean plus FGSM cross-entropy (eq. 2.22); the perturbation is a constant."""

    name = "at"
    Params = ATParams
    schedule = "ch3"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        per_example = F.cross_entropy(logits, y, reduction="none")
        # Summed, not averaged, so that tiny gradients keep their sign; input gradient only.
        (grad,) = torch.autograd.grad(per_example.sum(), x, retain_graph=True)
        x_adv = x.detach() + self.params.eps * grad.sign()
        if self.params.clip:
            x_adv = x_adv.clamp(0, 1)
        adv = F.cross_entropy(model(x_adv), y)
        return BatchLoss(loss=per_example.mean() + self.params.weight * adv, logits=logits)
