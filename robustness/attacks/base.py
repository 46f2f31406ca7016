"""What every attack shares: the result type, chunking, checks and mode handling.

An attack is a frozen dataclass of hyper-parameters (defaults = the thesis's settings) that
implements :meth:`Attack.run` for one chunk. ``attack(model, x, y, ...)`` validates inputs,
puts the model in eval mode (restoring it after), splits the batch into ``chunk_size`` pieces
so memory stays bounded, and concatenates the per-chunk results. Attacks take gradients with
respect to the input only; the model's parameters, their ``.grad`` and ``requires_grad`` are
never touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robustness.errors import ConfigError
from robustness.modes import eval_mode
from robustness.threat import lp_norm

BOX_TOLERANCE = 1e-6


@dataclass
class AttackResult:
    """Per-example outcome of an attack (all tensors of length N, on the input's device)."""

    x_adv: torch.Tensor  # N×C×H×W, inside [0, 1]
    success: torch.Tensor  # bool: adversarial by the attack's criterion
    norms: torch.Tensor  # ‖x_adv − x‖ in ``norm``
    iterations: torch.Tensor  # int64: iterations the example was active
    grad_evals: torch.Tensor  # int64: forward+backward passes spent on the example
    norm: str  # "linf" | "l2" | "l1" | "l0" | "l0_pixel"
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # per-example extras

    def __len__(self) -> int:
        return len(self.x_adv)

    @classmethod
    def concat(cls, parts: list[AttackResult]) -> AttackResult:
        """Join chunk results in order."""
        if not parts:
            raise ValueError("no results to join")
        first = parts[0]
        return cls(
            x_adv=torch.cat([p.x_adv for p in parts]),
            success=torch.cat([p.success for p in parts]),
            norms=torch.cat([p.norms for p in parts]),
            iterations=torch.cat([p.iterations for p in parts]),
            grad_evals=torch.cat([p.grad_evals for p in parts]),
            norm=first.norm,
            extras={k: torch.cat([p.extras[k] for p in parts]) for k in first.extras},
        )

    def success_rate(self) -> float:
        return self.success.float().mean().item() if len(self) else 0.0


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Base class: subclasses are frozen dataclasses that set ``name`` and implement ``run``.

    Each subclass also has a ``norm`` (a dataclass field where it is selectable, else a
    ClassVar) naming the norm its perturbations are measured in.
    """

    name: ClassVar[str] = ""
    chunk_size: int = 1000  # examples per chunk: bounds memory on 10,000 images

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ConfigError(f"chunk_size must be positive, got {self.chunk_size}")

    def run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> AttackResult:
        """Attack one chunk. ``kwargs`` tensors are already cut to the chunk."""
        raise NotImplementedError

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        progress: Callable[[int, int], None] | None = None,
        **kwargs: Any,
    ) -> AttackResult:
        """Attack ``x`` (labels ``y``) in chunks; per-example tensor kwargs are chunked too.

        ``progress(done, total)`` is called after each chunk. An attack with a ``seed`` draws
        each chunk from ``seed + chunk start``, so chunks do not repeat one random sequence.
        """
        check_inputs(x, y)
        n = len(x)
        per_example = {
            k
            for k, v in kwargs.items()
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and len(v) == n
        }
        seed: int | None = getattr(self, "seed", None)
        parts = []
        with eval_mode(model):
            for start in range(0, n, self.chunk_size):
                stop = min(start + self.chunk_size, n)
                chunk_kw = {
                    k: (v[start:stop] if k in per_example else v) for k, v in kwargs.items()
                }
                attack = (
                    # ``seed`` is a field of some subclasses only, unknown to Attack's signature
                    dataclasses.replace(self, **{"seed": seed + start})
                    if seed is not None
                    else self
                )
                parts.append(attack.run(model, x[start:stop].detach(), y[start:stop], **chunk_kw))
                if progress is not None:
                    progress(stop, n)
        return AttackResult.concat(parts)

    def describe(self) -> dict[str, Any]:
        """Name and hyper-parameters, for registry entries and JSON reports."""
        return {
            "attack": self.name,
            "norm": getattr(self, "norm", None),
            **dataclasses.asdict(self),
        }


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """Reject what would make an attack's result meaningless."""
    if not x.is_floating_point() or x.dim() != 4:
        raise ValueError(f"x must be a float tensor N×C×H×W, got {x.dtype} {tuple(x.shape)}")
    if y.dim() != 1 or len(y) != len(x) or y.is_floating_point():
        raise ValueError(f"y must be N integer labels for {len(x)} inputs, got {tuple(y.shape)}")
    if len(x) and (x.min() < -BOX_TOLERANCE or x.max() > 1 + BOX_TOLERANCE):
        raise ValueError("x must lie in [0, 1]")


def logits_and_grad(
    model: nn.Module, x: torch.Tensor, objective: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at ``x``, per-example ``objective(logits)`` and its gradient w.r.t. ``x`` only."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        value = objective(logits)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return logits.detach(), value.detach(), grad


LOOP_BATCH = 32  # from this batch size on, a loop over classes beats vmap's fallback


def class_gradients(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the input gradient of every logit: N×k and k×N×C×H×W.

    With ``classes`` (N×m class indices per example) only those logits (N×m) and their
    gradients (m×N×C×H×W). One forward pass; then, for batches of ``LOOP_BATCH`` or more, one
    backward per class through the same graph (vmap has no batching rule for convolution and
    max-pool backward and falls back to a slower loop), else one vmapped backward. Never a
    loop over examples.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        picked = logits if classes is None else logits.gather(1, classes)
        m = picked.shape[1]
        if len(x) >= LOOP_BATCH:
            grads = x.new_empty(m, *x.shape)
            for j in range(m):
                (grads[j],) = torch.autograd.grad(picked[:, j].sum(), x, retain_graph=j < m - 1)
        else:
            seeds = torch.eye(m, device=x.device, dtype=picked.dtype)[:, None, :]
            (grads,) = torch.autograd.grad(
                picked, x, grad_outputs=seeds.expand(m, len(x), m), is_grads_batched=True
            )
    return picked.detach(), grads


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """m = z_y − max_{j≠y} z_j per example (eq. 5.2): misclassified ⇔ m ≤ 0 (ties aside)."""
    own = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return own - others.amax(1)


def box_project(x: torch.Tensor, r: torch.Tensor, overshoot: float) -> torch.Tensor:
    """Shrink ``r`` so that x + (1+os)·r stays in [0,1] (chapter 4 code, methods.md §4.2)."""
    return ((x + (1 + overshoot) * r).clamp(0, 1) - x) / (1 + overshoot)


def make_result(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    success: torch.Tensor,
    norm: str,
    iterations: torch.Tensor,
    grad_evals: torch.Tensor,
    **extras: torch.Tensor,
) -> AttackResult:
    """Assemble a result, clamping into the box and measuring norms consistently."""
    x_adv = x_adv.detach().clamp(0, 1)
    return AttackResult(
        x_adv=x_adv,
        success=success.bool(),
        norms=lp_norm(x_adv - x, norm),
        iterations=iterations.long(),
        grad_evals=grad_evals.long(),
        norm=norm,
        extras=extras,
    )


def generator_for(x: torch.Tensor, seed: int | None) -> torch.Generator | None:
    """A generator on ``x``'s device seeded with ``seed`` (None: the global RNG)."""
    if seed is None:
        return None
    return torch.Generator(device=x.device).manual_seed(seed)
