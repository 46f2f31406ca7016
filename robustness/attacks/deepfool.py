"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), thesis eq. 2.18, methods.md §4.2.

At the current point the classifier is linearised; for every class j ≠ y the boundary with y
is the hyperplane f_j + w_jᵀr = 0 (f_j = z_j − z_y, w_j = ∇z_j − ∇z_y), at distance
|f_j| / ‖w_j‖ (‖·‖₂ for l2, the dual ‖·‖₁ for l∞). One step goes to the closest hyperplane, plus
1e-4 (the chapter 4 code). Steps accumulate in r; the attack linearises and checks success at
x + (1+os)·r inside the box, and stops for an example as soon as its prediction changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from robustness import threat
from robustness.attacks.base import (
    Attack,
    Chunk,
    boundary_distances,
    box_project,
    class_gradients,
)
from robustness.errors import ConfigError

_EXTRA = 1e-4  # added to every step length (chapter 4 code): lands just past the boundary


@dataclass(frozen=True, kw_only=True)
class DeepFool(Attack):
    """Minimum-norm untargeted attack: repeated steps to the nearest linearised boundary."""

    name: ClassVar[str] = "deepfool"
    norms: ClassVar[tuple[str, ...]] = ("l2", "linf")
    norm: str = "l2"  # "l2" (eq. 2.18) or "linf" (‖w‖₁ distance, sign step; chapter 5)
    steps: int = 50  # chapter 3 evaluation: 50 iterations (chapter 4: 500)
    overshoot: float = 0.02  # methods.md §4.2: os = 0.02 in every chapter
    clip: float | None = None  # per-step length cap in the attack's norm: ch. 3 0.5, ch. 4 0.1
    box: str = "project"  # "project": ch. 4 box projection of r; "clamp": clip x+(1+os)r only
    candidates: int | None = None  # top-k classes by clean logit (foolbox); None: all classes

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.overshoot < 0:
            raise ConfigError(f"overshoot must be >= 0, got {self.overshoot}")
        if self.clip is not None and self.clip <= 0:
            raise ConfigError(f"clip must be positive or None, got {self.clip}")
        if self.box not in ("project", "clamp"):
            raise ConfigError(f"box must be 'project' or 'clamp', got {self.box!r}")
        if self.candidates is not None and self.candidates < 2:
            raise ConfigError(f"candidates must be >= 2 or None, got {self.candidates}")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
    ) -> torch.Tensor:
        """Attack one chunk; examples leave the working batch once misclassified."""
        scale = 1 + self.overshoot
        x_adv = x.clone()

        with torch.no_grad():
            clean_logits = model(x)
        num_classes = clean_logits.shape[1]
        use_candidates = self.candidates is not None and self.candidates < num_classes
        idx = (clean_logits.argmax(1) == y).nonzero().squeeze(1)
        # The active rows' state, compacted: rows are written back once they leave.
        xa, ya, x_cur = x[idx], y[idx], x[idx]
        ra = torch.zeros_like(xa)
        if use_candidates:
            # Candidate classes at the clean input, the label first (foolbox's choice).
            first = torch.full_like(clean_logits[:, :1], float("inf"))
            scores = clean_logits.scatter(1, y[:, None], first)
            cls = scores.topk(self.candidates, dim=1).indices[idx]
            own = torch.zeros_like(ya)  # the label is candidate 0
        else:
            cls, own = None, ya

        done_steps = 0
        while done_steps < self.steps and len(idx):
            # One forward and the batched backward for all (candidate) classes per iteration.
            logits, grads = class_gradients(model, x_cur, cls)
            chunk.count(idx)
            ra = ra + self._step(logits, grads, own)
            if self.box == "project":
                ra = box_project(xa, ra, self.overshoot)
            x_cur = (xa + scale * ra).clamp(0, 1)
            done_steps += 1
            chunk.advance(done_steps, self.steps)
            # Each step is checked at the point it would return (one forward, no gradient).
            with torch.no_grad():
                fooled = model(x_cur).argmax(1) != ya
            if fooled.any():
                x_adv[idx[fooled]] = x_cur[fooled]
                keep = (~fooled).nonzero().squeeze(1)
                idx, xa, ya, own, x_cur, ra = (v[keep] for v in (idx, xa, ya, own, x_cur, ra))
                if cls is not None:
                    cls = cls[keep]
        x_adv[idx] = x_cur
        return x_adv

    def _step(self, logits: torch.Tensor, grads: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """Step to the nearest linearised boundary (eq. 2.18): logits n×m, grads m×n×…."""
        rows = torch.arange(len(logits), device=logits.device)
        ball = threat.norm(self.norm)
        dist, w, _ = boundary_distances(logits, grads, own, ball)
        j = dist.argmin(1)
        length = dist[rows, j] + _EXTRA
        if self.clip is not None:
            length = length.clamp_max(self.clip)
        w_j = w[j, rows]  # n×D
        # Along the steepest direction of the attack's norm: sign(w) for linf, w/‖w‖₂ for l2.
        return (length[:, None] * ball.steepest(w_j)).view_as(grads[0])
