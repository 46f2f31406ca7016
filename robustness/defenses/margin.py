"""Margin maximization (thesis chapter 3, eq. 3.18), methods.md §5.

loss = mean hinge max(0, 1 + max_{j≠y} z_j − z_y) + C · mean S(x, y), with the margin
sensitivity S = max_{j≠y} ‖∇ₓz_j − ∇ₓz_y‖ over the full input Jacobian. As in the authors'
code, the l2 variant uses the *squared* l2 norm (C = 0.1) and the l1 variant the l1 norm
(C = 0.01; it enlarges the l∞ margin). The class j is picked on first-order gradients of all k
logits (k backward passes through the clean graph, a loop: vmap's fallback for convolutions is
slower); only ∇ₓ(z_j − z_y) is then taken with a graph, so the penalty's double
backpropagation costs one extra backward pass instead of k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustness.attacks.base import logit_gradients, margin
from robustness.defenses.base import BatchLoss, Defense
from robustness.errors import ConfigError
from robustness.plugins import as_float

NORMS = ("l2", "l1")
LOSSES = ("hinge", "ce")
DEFAULT_C = {"l2": 0.1, "l1": 0.01}  # §3.5.1: chosen on validation data


@dataclass(frozen=True)
class MarginParams:
    norm: str = "l2"  # "l2": squared l2 sensitivity; "l1": l1 sensitivity (l∞ robustness)
    c: float | None = None  # weight C of eq. 3.18; None: 0.1 for l2, 0.01 for l1 (§3.5.1)
    loss: str = "hinge"  # "hinge" (eq. 3.18, MNIST); "ce": cross-entropy (CIFAR-10/NIN, §3.5.2)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        c = DEFAULT_C[self.norm] if self.c is None else as_float(self.c, "c")
        if not (math.isfinite(c) and c >= 0):
            raise ConfigError(f"c must be a finite number >= 0, got {c}")
        object.__setattr__(self, "c", c)


def _sensitivity_norm(g: torch.Tensor, norm: str) -> torch.Tensor:
    """Squared l2 or l1 norm over the last three dimensions (C×H×W)."""
    flat = g.flatten(-3)
    return flat.square().sum(-1) if norm == "l2" else flat.abs().sum(-1)


def logits_and_sensitivity(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-example S(x, y), both differentiable w.r.t. the parameters."""
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        n, k = logits.shape
        eye = torch.eye(k, device=x.device, dtype=logits.dtype)
        # Pick j without gradient: ∇z_c for every class c (k×N×C×H×W), first order.
        grads = logit_gradients(logits, x, keep_graph=True)
        rows = torch.arange(n, device=x.device)
        scores = _sensitivity_norm(grads - grads[y, rows][None], norm).T  # N×k
        j = scores.scatter(1, y[:, None], float("-inf")).argmax(1)
        # ∇ₓ(z_j − z_y) again, now with a graph for double backpropagation.
        seed = eye[j] - eye[y]
        (w,) = torch.autograd.grad(logits, x, grad_outputs=seed, create_graph=True)
    return logits, _sensitivity_norm(w, norm)


def margin_sensitivity(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str
) -> torch.Tensor:
    """Per-example margin sensitivity S(x, y) (squared l2 or l1), differentiable."""
    return logits_and_sensitivity(model, x, y, norm)[1]


class MarginMaximization(Defense):
    """Multiclass hinge (or cross-entropy) plus C times the margin sensitivity (eq. 3.18)."""

    name = "margin"
    Params = MarginParams
    schedule = "ch3"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        p = self.params
        logits, sensitivity = logits_and_sensitivity(model, x, y, p.norm)
        if p.loss == "hinge":
            data_loss = F.relu(1 - margin(logits, y)).mean()
        else:
            data_loss = F.cross_entropy(logits, y)
        return BatchLoss(loss=data_loss + p.c * sensitivity.mean(), logits=logits)
