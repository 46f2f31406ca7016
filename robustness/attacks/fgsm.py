"""Fast gradient sign method (Goodfellow et al. 2015), thesis eq. 2.17, methods.md §4.1.

One step of size ε along the sign of the input gradient of the cross-entropy, then the box:
x_adv = clamp(x + ε·sign(∇ₓ CE(f(x), y)), 0, 1). Being a single step, it attacks every example,
also those already misclassified (the thesis's "error under FGSM" is the error on these
images); ``success`` is whether the prediction at the returned x_adv differs from y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustness.attacks.base import Attack, Chunk, logits_and_grad
from robustness.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """One l∞ step of size ε along the sign of the loss gradient (eq. 2.17)."""

    name: ClassVar[str] = "fgsm"
    norm: ClassVar[str] = "linf"
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    eps: float = 0.2  # chapter 3 evaluation on MNIST (0.05 on CIFAR-10), methods.md §4.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ConfigError(f"eps must be a finite number >= 0, got {self.eps}")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
    ) -> torch.Tensor:
        """One forward+backward pass per example (the base adds the forward check)."""
        _, _, grad = logits_and_grad(
            model, x, lambda logits: F.cross_entropy(logits, y, reduction="none")
        )
        chunk.count()
        return x + self.eps * grad.sign()
