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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustness.attacks.base import (
    Attack,
    Chunk,
    boundary_distances,
    box_project,
    class_gradients,
    logits_and_grad,
)
from robustness.errors import ConfigError
from robustness.threat import per_example

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


def closest_target_from(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`closest_target` from a forward pass the caller made: ``logits`` = model(x) with
    ``x`` a leaf that requires grad; the graph is kept for the caller.

    k − 1 backward passes, one per class j ≠ y, each seeded with e_j − e_y so that it yields
    w_j = ∇z_j − ∇z_y directly (the adversary critic reuses its clean pass this way).
    """
    n, k = logits.shape
    rows = torch.arange(n, device=logits.device)
    y = y.to(logits.device)
    others = torch.arange(k, device=logits.device).expand(n, k)
    others = others[others != y[:, None]].view(n, k - 1)  # the classes j ≠ y, per example
    own = F.one_hot(y, k).to(logits.dtype)
    dist = logits.new_empty(n, k - 1)
    for m in range(k - 1):
        seed = F.one_hot(others[:, m], k).to(logits.dtype) - own
        (w,) = torch.autograd.grad(logits, x, grad_outputs=seed, retain_graph=True)
        f = (logits.detach() * seed).sum(1).abs()
        dist[:, m] = f / w.flatten(1).norm(dim=1).clamp_min(_TINY)
    return others[rows, dist.argmin(1)]


def _closest(logits: torch.Tensor, grads: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`closest_target` from the logits (N×k) and class gradients (k×N×…) at x."""
    return boundary_distances(logits, grads, y)[0].argmin(1)


def _log_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example log p_t."""
    return F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)


@dataclass(frozen=True, kw_only=True)
class HighConfidence(Attack):
    """Targeted l2 attack reaching the target with confidence ≥ C (chapter 4, Algorithm 1).

    Call as ``attack(model, x, y, target=None)``; a given ``target`` (N class indices)
    overrides the ``target`` field. ``grad_evals`` counts one per example and check, plus k
    (the number of classes) for the closest-target pass: one forward, k backward passes.
    Success, measured on the returned points, is argmax = t and p_t ≥ C.
    """

    name: ClassVar[str] = "hc"
    norm: ClassVar[str] = "l2"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
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

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        chunk: Chunk,
        target: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """Attack one chunk; examples leave the batch once they reach t with confidence C."""
        scale = 1 + self.overshoot
        if target is None and self.target == "closest":
            # The clean logits come with the class gradients: one forward and k backward
            # passes, counted as k gradient evaluations.
            clean_logits, grads = class_gradients(model, x)
            t = _closest(clean_logits, grads, y)
            del grads
            chunk.count(iterations=0, grad_evals=clean_logits.shape[1])
        else:
            with torch.no_grad():
                clean_logits = model(x)
            t = self._fixed_target(target, y, clean_logits.shape[1], chunk.generator)
        clean_probs = clean_logits.softmax(1)
        clean_confidence, clean_pred = clean_probs.max(1)
        if self.confidence == "original":
            c = clean_confidence.clone()
        else:
            c = torch.full_like(clean_confidence, float(self.confidence))
        log_c = c.clamp_min(_TINY).log()
        chunk.extras.update(
            target=t, confidence=c, clean_confidence=clean_confidence, clean_pred=clean_pred
        )

        x_adv = x.clone()
        reached = (clean_pred == t) & (clean_probs.gather(1, t[:, None]).squeeze(1) >= c)
        idx = (~reached & (t != y)).nonzero().squeeze(1)
        # The active rows' state, compacted: rows are written back once they leave.
        xa, ta, ca, log_ca, x_cur = x[idx], t[idx], c[idx], log_c[idx], x[idx]
        ra = torch.zeros_like(xa)
        done_steps = 0
        while done_steps < self.steps and len(idx):
            logits, ell, g = logits_and_grad(model, x_cur, lambda z, ta=ta: _log_target(z, ta))
            chunk.count(idx, iterations=0)  # one evaluation per check
            # Done (checked before each update): argmax = t and p_t ≥ C.
            p_t = logits.softmax(1).gather(1, ta[:, None]).squeeze(1)
            done = (logits.argmax(1) == ta) & (p_t >= ca)
            if done.any():
                x_adv[idx[done]] = x_cur[done]
                keep = (~done).nonzero().squeeze(1)
                active = (idx, xa, ta, ca, log_ca, x_cur, ra, ell, g)
                idx, xa, ta, ca, log_ca, x_cur, ra, ell, g = (v[keep] for v in active)
                if not len(idx):
                    break
            g_norm = g.flatten(1).norm(dim=1).clamp_min(_TINY)
            length = (ell - log_ca).abs() / g_norm + _EXTRA
            if self.clip is not None:
                length = length.clamp_max(self.clip)
            ra = box_project(xa, ra + g * per_example(length / g_norm, g), self.overshoot)
            x_cur = (xa + scale * ra).clamp(0, 1)
            chunk.count(idx, grad_evals=0)  # one update
            done_steps += 1
            chunk.advance(done_steps, self.steps)
        x_adv[idx] = x_cur
        return x_adv

    def criterion(
        self, logits: torch.Tensor, y: torch.Tensor, extras: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """The target reached with the requested confidence: argmax = t and p_t ≥ C."""
        t, c = extras["target"], extras["confidence"]
        return (logits.argmax(1) == t) & (_target_probability(logits, t) >= c)

    def measurements(
        self, logits: torch.Tensor, success: torch.Tensor, extras: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """p_t at the returned points."""
        return {"achieved": _target_probability(logits, extras["target"])}

    def _fixed_target(
        self,
        target: torch.Tensor | int | None,
        y: torch.Tensor,
        num_classes: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The caller's targets, else random ones (uniform over the classes ≠ y, seeded)."""
        if target is not None:
            return self._given_target(target, len(y), num_classes, y.device)
        shift = torch.randint(1, num_classes, (len(y),), generator=generator, device=y.device)
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


def _target_probability(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example p_t."""
    return logits.softmax(1).gather(1, target[:, None]).squeeze(1)


def hc_differentiable(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    confidence: torch.Tensor,
    *,
    steps: int = 5,
    overshoot: float = 0.05,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Training version (§4.4): ``steps`` unrolled steps, x̂ = x + (1+os)·r with its graph kept.

    Gradients reach the model's parameters (and ``confidence`` when it requires grad) through
    each step's direction g (second order), its length and a straight-through stop mask. No
    box, no clip; each iterate is detached before its gradient is taken. ``start`` = (x as a
    leaf that requires grad, model(leaf)) saves the first step's forward when the caller has
    it already (the adversary critic's clean pass).
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
        for step in range(steps):
            if step == 0 and start is not None:
                x_i, logits = start  # r = 0: the first iterate is x itself
            else:
                x_i = (x + scale * r).detach().requires_grad_(True)
                logits = model(x_i)
            ell = _log_target(logits, target)
            (g,) = torch.autograd.grad(ell.sum(), x_i, create_graph=True)
            g_norm = g.flatten(1).norm(dim=1).clamp_min(_TINY)
            length = (ell - log_c).abs() / g_norm + _EXTRA
            gap = confidence - ell.exp()
            soft = torch.sigmoid(gap)
            hard = (gap > 0).to(soft.dtype)
            keep = keep * (soft + (hard - soft).detach())  # forward 1 while p_t < C, else 0
            r = r + g * (keep * length / g_norm).view(view)
        return x + scale * r
