"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), thesis eq. 2.18, methods.md §4.2.

At the current point the classifier is linearised; for every class j ≠ y the boundary with y
is the hyperplane f_j + w_jᵀr = 0 (f_j = z_j − z_y, w_j = ∇z_j − ∇z_y), at distance
|f_j| / ‖w_j‖ (‖·‖₂ for l2, the dual ‖·‖₁ for l∞). One step goes to the closest hyperplane, plus
1e-4 (the chapter 4 code). Steps accumulate in r; the attack linearises and checks success at
x + (1+os)·r inside the box, and stops for an example as soon as its prediction changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robustness.attacks.base import Attack, AttackResult, box_project, class_gradients, make_result
from robustness.errors import ConfigError

_TINY = 1e-12
_EXTRA = 1e-4  # added to every step length (chapter 4 code): lands just past the boundary


@dataclass(frozen=True, kw_only=True)
class DeepFool(Attack):
    """Minimum-norm untargeted attack: repeated steps to the nearest linearised boundary."""

    name: ClassVar[str] = "deepfool"
    norm: str = "l2"  # "l2" (eq. 2.18) or "linf" (‖w‖₁ distance, sign step; chapter 5)
    steps: int = 50  # chapter 3 evaluation: 50 iterations (chapter 4: 500)
    overshoot: float = 0.02  # methods.md §4.2: os = 0.02 in every chapter
    clip: float | None = None  # per-step length cap in the attack's norm: ch. 3 0.5, ch. 4 0.1
    box: str = "project"  # "project": ch. 4 box projection of r; "clamp": clip x+(1+os)r only
    candidates: int | None = None  # top-k classes by clean logit (foolbox); None: all classes

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in ("l2", "linf"):
            raise ConfigError(f"DeepFool norm must be 'l2' or 'linf', got {self.norm!r}")
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

    def run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> AttackResult:
        """Attack one chunk; examples leave the working batch once misclassified."""
        if kwargs:
            raise TypeError(f"DeepFool takes no extra arguments, got {', '.join(kwargs)}")
        n = len(x)
        y = y.to(x.device)
        scale = 1 + self.overshoot
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        x_adv = x.clone()

        with torch.no_grad():
            clean_logits = model(x)
        num_classes = clean_logits.shape[1]
        use_candidates = self.candidates is not None and self.candidates < num_classes
        success = clean_logits.argmax(1) != y
        idx = (~success).nonzero().squeeze(1)
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
            logits, grads = class_gradients(model, x_cur, cls)
            ra = ra + self._step(logits, grads, own)
            if self.box == "project":
                ra = box_project(xa, ra, self.overshoot)
            x_cur = (xa + scale * ra).clamp(0, 1)
            done_steps += 1
            # Success is checked at the point returned (one forward, no gradient); the
            # check at the last step is also the final verdict.
            with torch.no_grad():
                fooled = model(x_cur).argmax(1) != ya
            if fooled.any():
                gone = idx[fooled]
                x_adv[gone] = x_cur[fooled]
                iterations[gone] = done_steps
                success[gone] = True
                keep = (~fooled).nonzero().squeeze(1)
                idx, xa, ya, own, x_cur, ra = (v[keep] for v in (idx, xa, ya, own, x_cur, ra))
                if cls is not None:
                    cls = cls[keep]
        x_adv[idx] = x_cur
        iterations[idx] = done_steps
        # One forward and the batched backward for all (candidate) classes per iteration.
        return make_result(x, x_adv, success, self.norm, iterations, iterations.clone())

    def _step(self, logits: torch.Tensor, grads: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """Step to the nearest linearised boundary (eq. 2.18): logits n×m, grads m×n×…."""
        n = len(logits)
        rows = torch.arange(n, device=logits.device)
        flat = grads.flatten(2)  # m×n×D
        f = logits - logits[rows, own][:, None]  # n×m, f_j = z_j − z_y
        w = flat - flat[own, rows][None]  # m×n×D, w_j = ∇z_j − ∇z_y
        dual = 1 if self.norm == "linf" else 2
        w_norm = w.norm(p=dual, dim=2).T.clamp_min(_TINY)  # n×m
        dist = f.abs() / w_norm
        dist[rows, own] = float("inf")
        j = dist.argmin(1)
        length = dist[rows, j] + _EXTRA
        if self.clip is not None:
            length = length.clamp_max(self.clip)
        w_j = w[j, rows]  # n×D
        direction = w_j.sign() if self.norm == "linf" else w_j / w_norm[rows, j][:, None]
        return (length[:, None] * direction).view_as(grads[0])
