"""PGD adversarial training (Madry et al. 2018), methods.md §3 and §5.

Trains on adversarial examples only: loss = CE(f(x_adv), y), x_adv from projected gradient
ascent of the cross-entropy inside the ε-ball and the box, from a random start, with no early
stopping and the model in its current (training) mode. The attack module's ``PGD`` is not
reused: it switches to eval mode, skips examples misclassified at the start and syncs with the
host to drop finished examples — right for evaluation, wrong for Madry's training.

Madry's optimiser (Adam lr 1e-4, batch 50, ≈ 83 epochs) is not a thesis schedule: train with
the "constant" schedule and ``--lr 1e-4 --batch-size 50`` on the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustness import threat
from robustness.attacks.base import logits_and_grad
from robustness.defenses.base import BatchLoss, Defense
from robustness.errors import ConfigError
from robustness.plugins import as_float

NORMS = ("linf", "l2")
# (eps, step) when not given: Madry's l∞ MNIST setting; the chapter 5 "l2-AT" model.
DEFAULTS = {"linf": (0.3, 0.01), "l2": (2.0, 0.1)}


@dataclass(frozen=True)
class PGDParams:
    norm: str = "linf"  # threat model: "linf" (Madry et al.) or "l2" (chapter 5 "l2-AT")
    eps: float | None = None  # radius; None: 0.3 for linf (§4.1), 2.0 for l2
    step: float | None = None  # step size a; None: 0.01 for linf (§4.1), 0.1 for l2
    steps: int = 40  # iterations (Madry et al., §4.1)
    random_start: bool = True  # uniform start in the ε-ball (§4.1)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        eps, step = DEFAULTS[self.norm]
        eps = eps if self.eps is None else as_float(self.eps, "eps")
        step = step if self.step is None else as_float(self.step, "step")
        if not (math.isfinite(eps) and eps >= 0):
            raise ConfigError(f"eps must be a finite number >= 0, got {eps}")
        if not (math.isfinite(step) and step > 0):
            raise ConfigError(f"step must be a finite number > 0, got {step}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        object.__setattr__(self, "eps", eps)
        object.__setattr__(self, "step", step)


def adversarial_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: PGDParams,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Detached PGD examples for every input (no early stop), in the model's current mode."""
    eps, step = params.eps, params.step
    assert eps is not None and step is not None  # PGDParams.__post_init__ fills in defaults
    ball = threat.get(params.norm)
    x = x.detach()
    x_adv = x
    if params.random_start:
        x_adv = (x + ball.random(x, eps, generator=generator)).clamp(0, 1)
    for _ in range(params.steps):
        _, _, grad = logits_and_grad(
            model, x_adv, lambda z: F.cross_entropy(z, y, reduction="none")
        )
        r = ball.project(x_adv - x + step * ball.steepest(grad), eps)
        x_adv = (x + r).clamp(0, 1)
    return x_adv.detach()


class PGDTraining(Defense):
    """Cross-entropy on PGD examples only; the returned logits are the clean ones (no grad)."""

    name = "pgd"
    Params = PGDParams
    schedule = "constant"  # Madry: Adam 1e-4, batch 50 — set with --lr and --batch-size

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        x_adv = adversarial_examples(model, x, y, self.params)
        loss = F.cross_entropy(model(x_adv), y)
        with torch.no_grad():  # clean logits, for the loop's training accuracy only
            logits = model(x)
        return BatchLoss(loss=loss, logits=logits)
