"""Robustness metrics of the thesis: clean error, FGSM error, ρ_adv, minimum-norm statistics.

Pure functions over a model and tensors; attacks are passed in as configured objects, so the
same metrics serve every attack. Definitions follow methods.md §6.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustness.modes import eval_mode

# The thesis's evaluation settings per attack (Table 4.1 protocol, methods.md §4); each can
# be overridden with ``overrides[attack][param]``.
EVALUATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "fgsm": {"eps": 0.2},  # chapter 3: FGSM error at eps = 0.2 on MNIST
    "deepfool": {"norm": "l2", "steps": 500, "clip": 0.1, "overshoot": 0.02},  # chapter 4
    "cw": {"binary_steps": 9, "steps": 1000, "initial_const": 1e-3},  # chapter 4
    "hc": {},  # HighConfidence's own defaults are the thesis's test-time settings (§4.5)
}


# Robust-accuracy thresholds for MNIST per norm (chapter 5 reports five per norm and model).
DEFAULT_THRESHOLDS: dict[str, tuple[float, ...]] = {
    "linf": (0.05, 0.1, 0.15, 0.2, 0.3),
    "l2": (0.5, 1.0, 1.5, 2.0, 2.5),
    "l1": (2.5, 5.0, 7.5, 10.0, 12.5),
    "l0": (5, 10, 15, 20, 25),
    "l0_pixel": (5, 10, 15, 20, 25),
}

Progress = Callable[[int, int], None]  # (examples done, total)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes for ``x`` in fixed-size chunks, on the device of ``x``."""
    with eval_mode(model):
        return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])


def error_rate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000
) -> float:
    """Fraction of misclassified examples (0..1)."""
    if len(x) == 0:
        raise ValueError("cannot compute an error rate on zero examples")
    wrong = (predict(model, x, batch_size=batch_size) != y).sum()
    return wrong.item() / len(x)


@dataclass
class TimedResult:
    """An attack's result with the wall time it took."""

    result: Any  # robustness.attacks.AttackResult
    seconds: float


def run_attack(
    attack: Any,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    progress: Progress | None = None,
    **kwargs: Any,
) -> TimedResult:
    """Run ``attack`` (chunked by the attack itself) with progress, and time it."""
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    started = time.perf_counter()
    result = attack(model, x, y, progress=progress, **kwargs)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return TimedResult(result, time.perf_counter() - started)


def average_robustness(x: torch.Tensor, result: Any, correct: torch.Tensor) -> dict[str, Any]:
    """ρ_adv = mean ‖r‖₂ / ‖x‖₂ (eq. 3.20 / 4.9) from a minimum-norm attack's result.

    ``rho``: the thesis's definition, over correctly classified points that the attack
    perturbed successfully; ``rho_all``: the chapter 4 code's mean over all points with 0 for
    the misclassified ones (and for failed attacks, which it could not tell apart).
    """
    r = (result.x_adv - x).flatten(1).norm(dim=1)
    ratio = r / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    ok = correct & result.success
    ratio_all = torch.where(ok, ratio, torch.zeros_like(ratio))
    return {
        "rho": ratio[ok].mean().item() if ok.any() else None,
        "rho_all": ratio_all.mean().item() if len(x) else None,
        "success_rate": _rate(result.success[correct]),
        "mean_norm": r[ok].mean().item() if ok.any() else None,
        "attacked": int(correct.sum().item()),
        "failed": int((correct & ~result.success).sum().item()),
    }


def min_norm_summary(
    result: Any, correct: torch.Tensor, thresholds: Sequence[float] | None = None
) -> dict[str, Any]:
    """Chapter 5 statistics: success rate, mean/median norm, robust accuracy at thresholds.

    Norms are averaged over correctly classified points the attack succeeded on (Table 5.1);
    robust accuracy at ε counts points still correct after any perturbation of norm ≤ ε that
    the attack found.
    """
    norm = result.norm
    thresholds = DEFAULT_THRESHOLDS.get(norm, ()) if thresholds is None else thresholds
    ok = correct & result.success
    norms = result.norms[ok]
    robust = {}
    for eps in thresholds:
        broken = ok & (result.norms <= eps + 1e-6)
        robust[_key(eps)] = _rate(correct & ~broken)
    return {
        "norm": norm,
        "success_rate": _rate(result.success[correct]),
        "mean_norm": norms.mean().item() if len(norms) else None,
        "median_norm": norms.median().item() if len(norms) else None,
        "robust_accuracy": robust,
        "attacked": int(correct.sum().item()),
        "grad_evals_per_example": result.grad_evals.float().mean().item() if len(result) else 0,
    }


def _rate(mask: torch.Tensor) -> float:
    return mask.sum().item() / len(mask) if len(mask) else 0.0


def _key(eps: float) -> str:
    return f"{eps:g}"
