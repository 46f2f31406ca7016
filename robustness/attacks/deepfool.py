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
            raise ValueError(f"DeepFool norm must be 'l2' or 'linf', got {self.norm!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.overshoot < 0:
            raise ValueError(f"overshoot must be >= 0, got {self.overshoot}")
        if self.clip is not None and self.clip <= 0:
            raise ValueError(f"clip must be positive or None, got {self.clip}")
        if self.box not in ("project", "clamp"):
            raise ValueError(f"box must be 'project' or 'clamp', got {self.box!r}")
        if self.candidates is not None and self.candidates < 2:
            raise ValueError(f"candidates must be >= 2 or None, got {self.candidates}")

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
        grad_evals = torch.zeros_like(iterations)
        r = torch.zeros_like(x)
        x_adv = x.clone()

        with torch.no_grad():
            clean_logits = model(x)
        num_classes = clean_logits.shape[1]
        use_candidates = self.candidates is not None and self.candidates < num_classes
        classes = None
        if use_candidates:
            # Candidate classes at the clean input, the label first (foolbox's choice).
            first = torch.full_like(clean_logits[:, :1], float("inf"))
            scores = clean_logits.scatter(1, y[:, None], first)
            classes = scores.topk(self.candidates, dim=1).indices
        idx = (clean_logits.argmax(1) == y).nonzero().squeeze(1)

        for _ in range(self.steps):
            if idx.numel() == 0:
                break
            xa, ya = x_adv[idx], y[idx]
            if use_candidates:
                cls = classes[idx]
                logits, grads = class_gradients(model, xa, cls)
                own = torch.zeros_like(ya)  # the label is candidate 0
            else:
                logits, grads = class_gradients(model, xa)
                own = ya
            grad_evals[idx] += 1
            xc = x[idx]
            ra = r[idx] + self._step(logits, grads, own)
            if self.box == "project":
                ra = box_project(xc, ra, self.overshoot)
            x_new = (xc + scale * ra).clamp(0, 1)
            r.index_copy_(0, idx, ra)
            x_adv.index_copy_(0, idx, x_new)
            iterations[idx] += 1
            # Success is checked at the point returned (one forward, no gradient).
            with torch.no_grad():
                still = model(x_new).argmax(1) == ya
            idx = idx[still]

        with torch.no_grad():
            success = model(x_adv).argmax(1) != y
        return make_result(x, x_adv, success, self.norm, iterations, grad_evals)

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
