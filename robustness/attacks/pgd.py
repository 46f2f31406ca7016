"""Projected gradient descent (Kurakin et al. 2016; Madry et al. 2018), methods.md §4.1.

From a random start in the ε-ball, each iteration takes a steepest-ascent step of the loss in
the threat model's norm, projects onto the ε-ball around x and clamps into the box:
x_adv ← clamp(x + P_ε(x_adv − x + a·steepest(∇loss)), 0, 1). One loop serves l∞ and l2
through the norm objects of :mod:`robustness.threat`. With ``early_stop`` an example leaves the
working batch as soon as it is misclassified (robust-accuracy evaluation); restarts draw a new
random start for the examples not yet fooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustness import threat
from robustness.attacks.base import Attack, Chunk, logits_and_grad, margin
from robustness.errors import ConfigError
from robustness.threat import per_example

LOSSES = ("ce", "margin")


@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """Fixed-budget l∞/l2 attack: projected steepest ascent of the loss inside the ε-ball."""

    name: ClassVar[str] = "pgd"
    norms: ClassVar[tuple[str, ...]] = threat.PROJECTED
    norm: str = "linf"  # "linf" or "l2" (robustness.threat norm objects)
    eps: float = 0.3  # Madry et al. MNIST setting, methods.md §4.1 (radius in ``norm``)
    step: float = 0.01  # step size a, Madry et al. (§4.1)
    steps: int = 40  # iterations per restart, Madry et al. (§4.1)
    random_start: bool = True  # uniform start in the ε-ball (§4.1: U(−ε, ε) for l∞)
    restarts: int = 1  # runs from new random starts for the examples not yet fooled
    seed: int | None = 0  # random starts; None: the global RNG
    early_stop: bool = True  # a misclassified example leaves the batch (robust accuracy)
    loss: str = "ce"  # "ce": cross-entropy; "margin": max_{j≠y} z_j − z_y (C&W-style)

    def __post_init__(self) -> None:
        threat.get(self.norm)  # first: its message names the projected attacks' norms
        super().__post_init__()
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ConfigError(f"eps must be a finite number >= 0, got {self.eps}")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ConfigError(f"step must be a finite number > 0, got {self.step}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.restarts < 1:
            raise ConfigError(f"restarts must be >= 1, got {self.restarts}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
    ) -> torch.Tensor:
        """Attack one chunk; examples misclassified from the start cost no gradient."""
        ball = threat.get(self.norm)
        x_adv = x.clone()
        with torch.no_grad():
            misclassified = model(x).argmax(1) != y
        todo = (~misclassified).nonzero().squeeze(1)  # examples not yet fooled
        for run in range(self.restarts):
            if todo.numel() == 0:
                break
            x_last, fooled = self._one_run(model, x, y, todo, ball, chunk, run)
            x_adv[todo] = x_last  # the first success stays: later runs only see ``todo``
            todo = todo[~fooled]
            if not self.random_start:
                break  # a rerun from x itself would repeat the same iterates
        return x_adv

    def _one_run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        todo: torch.Tensor,
        ball: threat.Norm,
        chunk: Chunk,
        run: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Restart ``run`` for the examples ``todo``: their final points and which are fooled
        (not measured after the last run: the base's final check does that)."""
        x0 = x[todo]
        out = x0.clone()
        fooled = torch.zeros(len(todo), dtype=torch.bool, device=x.device)
        if self.random_start:
            out = (x0 + ball.random(x0, self.eps, generator=chunk.generator)).clamp(0, 1)
        pos = torch.arange(len(todo), device=x.device)  # active rows of ``out``
        xa, ya, cur = x0, y[todo], out
        objective = self._objective
        total = self.restarts * self.steps
        for step in range(self.steps):
            logits, _, grad = logits_and_grad(model, cur, lambda z, ya=ya: objective(z, ya))
            chunk.count(todo[pos])
            chunk.advance(run * self.steps + step + 1, total)
            if self.early_stop:
                hit = logits.argmax(1) != ya
                out[pos] = torch.where(per_example(hit, cur), cur, out[pos])
                fooled[pos] = hit
                keep = (~hit).nonzero().squeeze(1)  # the one host sync of the iteration
                if keep.numel() == 0:
                    return out, fooled
                if keep.numel() < len(pos):
                    pos, xa, ya, cur, grad = pos[keep], xa[keep], ya[keep], cur[keep], grad[keep]
            r = ball.project(cur - xa + self.step * ball.steepest(grad), self.eps)
            cur = (xa + r).clamp(0, 1)
        out[pos] = cur
        if run < self.restarts - 1 and self.random_start:
            with torch.no_grad():
                fooled[pos] = model(cur).argmax(1) != ya
        return out, fooled

    def _objective(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example loss to ascend: cross-entropy or the margin max_{j≠y} z_j − z_y."""
        if self.loss == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        return -margin(logits, y)
