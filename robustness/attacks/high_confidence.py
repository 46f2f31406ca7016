"""High-confidence targeted attack: thesis chapter 4, Algorithm 1 and eq. 4.6–4.8 (§4.4).

The attack looks for a small l2 perturbation that makes the network predict the target t with
probability at least C. Each step linearises ℓ = log p_t (the log avoids softmax saturation)
and jumps to where the linearisation reaches log C:
r_i = (|ℓ − log C| / ‖g‖₂ + 1e-4) · g / ‖g‖₂ with g = ∇ₓℓ (methods.md §4.4).

Two versions: :class:`HighConfidence`, the test-time attack (per-step clip, box projection,
early stop), and :func:`hc_differentiable`, the unrolled training version used inside the
adversary-critic defense, differentiable with respect to the model's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustness.attacks.base import (
    Attack,
    AttackResult,
    box_project,
    class_gradients,
    generator_for,
    logits_and_grad,
    make_result,
)
from robustness.errors import ConfigError

_TINY = 1e-12
_EXTRA = 1e-4  # added to every step length (chapter 4 code)


def closest_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The class j ≠ y with the nearest linearised boundary at ``x`` (DeepFool's distance).

    argmin_j |z_j − z_y| / ‖∇z_j − ∇z_y‖₂; one forward and one batched backward for all k
    classes (k backward passes). The model's mode is left as the caller set it; the result
    carries no graph.
    """
    logits, grads = class_gradients(model, x)
    return _closest(logits, grads, y.to(x.device))


def _closest(logits: torch.Tensor, grads: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`closest_target` from the logits (N×k) and class gradients (k×N×…) at x."""
    rows = torch.arange(len(logits), device=logits.device)
    flat = grads.flatten(2)  # k×n×D
    f = (logits - logits[rows, y][:, None]).abs()
    w_norm = (flat - flat[y, rows][None]).norm(dim=2).T.clamp_min(_TINY)  # n×k
    dist = f / w_norm
    dist[rows, y] = float("inf")
    return dist.argmin(1)


def _log_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example log p_t."""
    return F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)


@dataclass(frozen=True, kw_only=True)
class HighConfidence(Attack):
    """Targeted l2 attack reaching the target with confidence ≥ C (chapter 4, Algorithm 1).

    Call as ``attack(model, x, y, target=None)``; a given ``target`` (N class indices)
    overrides the ``target`` field. ``grad_evals`` counts one per example and check, plus k
    (the number of classes) for the closest-target pass: one forward, k backward passes.
    """

    name: ClassVar[str] = "hc"
    norm: ClassVar[str] = "l2"
    target: str = "closest"  # §4.4: the closest linearised boundary; or "random"
    confidence: float | str = "original"  # §4.5: the clean max-softmax confidence; or C in (0,1)
    steps: int = 500  # §4.5: at most 500 iterations at test time
    clip: float | None = 0.1  # §4.5: each step clipped to ‖r_i‖₂ ≤ 0.1
    overshoot: float = 0.02  # methods.md §4.4 (as DeepFool)
    seed: int | None = 0  # random targets only

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in ("closest", "random"):
            raise ConfigError(f"target must be 'closest' or 'random', got {self.target!r}")
        if isinstance(self.confidence, str):
            if self.confidence != "original":
                raise ConfigError(
                    f"confidence must be 'original' or a number in (0, 1), got {self.confidence!r}"
                )
        elif isinstance(self.confidence, bool) or not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.clip is not None and self.clip <= 0:
            raise ConfigError(f"clip must be positive or None, got {self.clip}")
        if self.overshoot < 0:
            raise ConfigError(f"overshoot must be >= 0, got {self.overshoot}")

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | int | None = None,
        **kwargs: Any,
    ) -> AttackResult:
        """Attack one chunk; examples leave the batch once they reach t with confidence C."""
        if kwargs:
            raise TypeError(f"HighConfidence takes only target=, got {', '.join(kwargs)}")
        n = len(x)
        y = y.to(x.device)
        scale = 1 + self.overshoot
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        grad_evals = torch.zeros_like(iterations)

        if target is None and self.target == "closest":
            # The clean logits come with the class gradients: one forward and k backward
            # passes, counted as k gradient evaluations.
            clean_logits, grads = class_gradients(model, x)
            t = _closest(clean_logits, grads, y)
            del grads
            grad_evals += clean_logits.shape[1]
        else:
            with torch.no_grad():
                clean_logits = model(x)
            t = self._fixed_target(target, y, clean_logits.shape[1])
        clean_probs = clean_logits.softmax(1)
        clean_confidence, clean_pred = clean_probs.max(1)
        if self.confidence == "original":
            c = clean_confidence.clone()
        else:
            c = torch.full_like(clean_confidence, float(self.confidence))
        log_c = c.clamp_min(_TINY).log()

        x_adv = x.clone()
        reached = (clean_pred == t) & (clean_probs.gather(1, t[:, None]).squeeze(1) >= c)
        idx = (~reached & (t != y)).nonzero().squeeze(1)
        # The active rows' state, compacted: rows are written back once they leave.
        xa, ta, ca, log_ca, x_cur = x[idx], t[idx], c[idx], log_c[idx], x[idx]
        ra = torch.zeros_like(xa)
        view = (-1, *([1] * (x.dim() - 1)))
        done_steps = 0
        while done_steps < self.steps and len(idx):
            logits, ell, g = logits_and_grad(model, x_cur, lambda z, ta=ta: _log_target(z, ta))
            # Done (checked before each update): argmax = t and p_t ≥ C.
            p_t = logits.softmax(1).gather(1, ta[:, None]).squeeze(1)
            done = (logits.argmax(1) == ta) & (p_t >= ca)
            if done.any():
                gone = idx[done]
                x_adv[gone] = x_cur[done]
                iterations[gone] = done_steps
                grad_evals[gone] += done_steps + 1
                keep = (~done).nonzero().squeeze(1)
                active = (idx, xa, ta, ca, log_ca, x_cur, ra, ell, g)
                idx, xa, ta, ca, log_ca, x_cur, ra, ell, g = (v[keep] for v in active)
                if not len(idx):
                    break
            g_norm = g.flatten(1).norm(dim=1).clamp_min(_TINY)
            length = (ell - log_ca).abs() / g_norm + _EXTRA
            if self.clip is not None:
                length = length.clamp_max(self.clip)
            ra = box_project(xa, ra + g * (length / g_norm).view(view), self.overshoot)
            x_cur = (xa + scale * ra).clamp(0, 1)
            done_steps += 1
        x_adv[idx] = x_cur
        iterations[idx] = done_steps
        grad_evals[idx] += done_steps

        with torch.no_grad():
            logits = model(x_adv)
        achieved = logits.softmax(1).gather(1, t[:, None]).squeeze(1)
        success = (logits.argmax(1) == t) & (achieved >= c)
        return make_result(
            x,
            x_adv,
            success,
            self.norm,
            iterations,
            grad_evals,
            target=t,
            confidence=c,
            achieved=achieved,
            clean_confidence=clean_confidence,
            clean_pred=clean_pred,
        )

    def _fixed_target(
        self, target: torch.Tensor | int | None, y: torch.Tensor, num_classes: int
    ) -> torch.Tensor:
        """The caller's targets, else random ones (uniform over the classes ≠ y, seeded)."""
        if target is not None:
            return self._given_target(target, len(y), num_classes, y.device)
        gen = generator_for(y, self.seed)
        shift = torch.randint(1, num_classes, (len(y),), generator=gen, device=y.device)
        return (y + shift) % num_classes

    @staticmethod
    def _given_target(
        target: torch.Tensor | int, n: int, num_classes: int, device: torch.device
    ) -> torch.Tensor:
        """Validate a caller's targets: N (or one, broadcast) class indices."""
        t = torch.as_tensor(target, device=device)
        if t.is_floating_point() or t.dim() > 1 or (t.dim() == 1 and len(t) != n):
            raise ConfigError(f"target must be {n} integer class indices, got {tuple(t.shape)}")
        t = t.long().expand(n).clone() if t.dim() == 0 else t.long()
        if n and (t.min() < 0 or t.max() >= num_classes):
            raise ConfigError(f"targets must lie in [0, {num_classes})")
        return t


def hc_differentiable(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    confidence: torch.Tensor,
    *,
    steps: int = 5,
    overshoot: float = 0.05,
) -> torch.Tensor:
    """Training version (§4.4): ``steps`` unrolled steps, x̂ = x + (1+os)·r with its graph kept.

    Gradients reach the model's parameters (and ``confidence`` when it requires grad) through
    each step's direction g (second order), its length and a straight-through stop mask. No
    box, no clip; each iterate is detached before its gradient is taken.
    """
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    target = target.to(x.device).long()
    confidence = torch.as_tensor(confidence, device=x.device, dtype=x.dtype).expand(len(x))
    scale = 1 + overshoot
    view = (-1, *([1] * (x.dim() - 1)))
    with torch.enable_grad():
        log_c = confidence.clamp_min(_TINY).log()
        r = torch.zeros_like(x)
        keep = torch.ones_like(confidence)  # running product of the stop masks
        for _ in range(steps):
            x_i = (x + scale * r).detach().requires_grad_(True)
            ell = _log_target(model(x_i), target)
            (g,) = torch.autograd.grad(ell.sum(), x_i, create_graph=True)
            g_norm = g.flatten(1).norm(dim=1).clamp_min(_TINY)
            length = (ell - log_c).abs() / g_norm + _EXTRA
            gap = confidence - ell.exp()
            soft = torch.sigmoid(gap)
            hard = (gap > 0).to(soft.dtype)
            keep = keep * (soft + (hard - soft).detach())  # forward 1 while p_t < C, else 0
            r = r + g * (keep * length / g_norm).view(view)
        return x + scale * r
