"""What every attack shares: the call, the result, per-chunk bookkeeping and shared numerics.

An attack is a frozen dataclass of hyper-parameters (defaults = the thesis's settings) that
implements one method, :meth:`Attack.perturb`, for one chunk. ``attack(model, x, y, ...)`` is
final and owns the rest: it checks the arguments, puts the model in eval mode (restoring every
submodule after), cuts the batch into ``chunk_size`` pieces with a seed each, gives each piece a
:class:`Chunk` (counters, progress, extras, generator), and measures what comes back the same
way for every attack: x_adv clamped into [0,1], ``success`` by the attack's criterion from one
forward pass on the returned tensor, norms of the returned perturbation. Attacks take gradients
with respect to the input only; the model's parameters, their ``.grad`` and ``requires_grad``
are never touched.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, final

import torch
from torch import nn

from robustness import threat
from robustness.errors import ConfigError
from robustness.modes import eval_mode
from robustness.threat import per_example

BOX_TOLERANCE = 1e-6
_TINY = 1e-12

Progress = Callable[[int, int], None]  # (images done, total)


@dataclass
class AttackResult:
    """Per-example outcome of an attack (all tensors of length N, on the input's device)."""

    x_adv: torch.Tensor  # N×C×H×W, inside [0, 1]
    success: torch.Tensor  # bool: adversarial by the attack's criterion, measured at x_adv
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


class Chunk:
    """One chunk's bookkeeping: made by :meth:`Attack.__call__`, filled in by ``perturb``.

    ``count`` adds to the per-example counters, ``advance`` says how much of the chunk's work is
    done (so progress moves inside long chunks), ``extras`` collects per-example tensors for the
    result, and ``generator`` draws the chunk's random numbers from ``seed`` (chunk start added).
    """

    def __init__(
        self,
        x: torch.Tensor,
        *,
        seed: int | None = None,
        on_advance: Callable[[float], None] | None = None,
    ) -> None:
        self.iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        self.grad_evals = torch.zeros_like(self.iterations)
        self.extras: dict[str, torch.Tensor] = {}
        self.seed = seed
        self._device = x.device
        self._generator: torch.Generator | None = None
        self._on_advance = on_advance

    @property
    def generator(self) -> torch.Generator | None:
        """A generator on the chunk's device seeded with ``seed`` (None: the global RNG)."""
        if self._generator is None and self.seed is not None:
            self._generator = torch.Generator(device=self._device).manual_seed(self.seed)
        return self._generator

    def count(
        self,
        rows: torch.Tensor | None = None,
        *,
        iterations: int = 1,
        grad_evals: int = 1,
    ) -> None:
        """Add to the counters of ``rows`` (indices or a mask of the chunk; None: all)."""
        index: torch.Tensor | slice = slice(None) if rows is None else rows
        if iterations:
            self.iterations[index] += iterations
        if grad_evals:
            self.grad_evals[index] += grad_evals

    def advance(self, done: float, total: float) -> None:
        """``done`` of the chunk's ``total`` units of work (iterations, say) are finished."""
        if self._on_advance is not None and total > 0:
            self._on_advance(min(max(done / total, 0.0), 1.0))


class _Progress:
    """Turns chunk fractions into whole images for a ``(done, total)`` callback, which is
    called once at the start and then only when the count grows (at most once per image)."""

    def __init__(self, callback: Progress | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = -1
        self(0)

    def __call__(self, done: int) -> None:
        if self.callback is not None and done > self.done:
            self.done = done
            self.callback(done, self.total)

    def within(self, start: int, stop: int) -> Callable[[float], None] | None:
        """The ``Chunk.advance`` sink for the chunk [start, stop)."""
        if self.callback is None:
            return None
        return lambda fraction: self(start + int(fraction * (stop - start)))


_HOOK_ARGUMENTS = ("self", "model", "x", "y", "chunk")


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Base class: subclasses are frozen dataclasses that set ``name`` and ``norms`` and
    implement :meth:`perturb`; ``__call__`` is final.

    Each subclass also has a ``norm`` (a dataclass field where it is selectable, else a
    ClassVar) naming the norm its perturbations are measured in, one of ``norms``.
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ()  # the norms the attack supports
    restore_failures: ClassVar[bool] = False  # True: a failed example comes back as x
    _arguments: ClassVar[frozenset[str] | None] = frozenset()  # perturb's extras (None: any)
    chunk_size: int = 1000  # examples per chunk: bounds memory on 10,000 images

    if TYPE_CHECKING:
        # Each subclass has one: a ClassVar (fixed norm) or a selectable field.
        @property
        def norm(self) -> str: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in vars(cls):
            raise TypeError(
                f"{cls.__name__} overrides __call__, which Attack keeps final (checks, chunks, "
                "modes, counters, the final measurement): implement perturb() instead"
            )
        params = list(inspect.signature(cls.perturb).parameters.values())
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            cls._arguments = None
        else:
            cls._arguments = frozenset(p.name for p in params if p.name not in _HOOK_ARGUMENTS)

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ConfigError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.norm not in self.norms:
            raise ConfigError(
                f"{self.name}: norm must be one of {', '.join(self.norms)}, got {self.norm!r}"
            )

    # -- what subclasses implement ------------------------------------------------------------
    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
    ) -> torch.Tensor:
        """Attack one chunk (``y`` on ``x``'s device, model in eval mode): the points x_adv.

        Counters, progress, extras and random numbers go through ``chunk``; the base clamps
        x_adv, decides success and measures norms. Extra keyword arguments of an override
        are the call's (per-example tensors cut to the chunk).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement perturb()")

    def criterion(
        self, logits: torch.Tensor, y: torch.Tensor, extras: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Which examples are adversarial, from the logits at the returned points: untargeted,
        the prediction differs from y. Targeted attacks read their targets from ``extras``."""
        return logits.argmax(1) != y

    def measurements(
        self, logits: torch.Tensor, success: torch.Tensor, extras: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Extras measured at the returned points (added to or replacing ``extras``)."""
        return {}

    # -- the call -----------------------------------------------------------------------------
    @final
    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        progress: Progress | None = None,
        **kwargs: Any,
    ) -> AttackResult:
        """Attack ``x`` (labels ``y``) in chunks; per-example tensor kwargs are chunked too.

        ``progress(done, total)`` counts images: (0, N) at the start, then as each chunk's work
        advances (inside long chunks too), reaching (N, N). Chunk ``i`` draws its random numbers
        from ``seed + chunk start``, so chunks do not repeat one random sequence.
        """
        check_inputs(x, y)
        self._check_call(model, x, kwargs)
        n = len(x)
        y = y.to(x.device)
        report = _Progress(progress, n)
        per_ex = {k for k, v in kwargs.items() if _is_per_example(v, n)}
        seed: int | None = getattr(self, "seed", None)
        parts = []
        with eval_mode(model):
            for start in range(0, n, self.chunk_size) or [0]:  # an empty batch: one chunk
                stop = min(start + self.chunk_size, n)
                xc, yc = x[start:stop].detach(), y[start:stop]
                chunk = Chunk(
                    xc,
                    seed=None if seed is None else seed + start,
                    on_advance=report.within(start, stop),
                )
                chunk_kw = {k: (v[start:stop] if k in per_ex else v) for k, v in kwargs.items()}
                x_adv = self.perturb(model, xc, yc, chunk, **chunk_kw)
                parts.append(self._measure(model, xc, yc, x_adv, chunk))
                report(stop)
        return AttackResult.concat(parts)

    def _check_call(self, model: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> None:
        """Refuse extra arguments ``perturb`` does not take and a model on another device."""
        allowed = self._arguments
        unknown = sorted(set(kwargs) - allowed) if allowed is not None else []
        if unknown:
            takes = ", ".join(f"{a}=" for a in sorted(allowed or ())) or "no extra arguments"
            only = "only " if allowed else ""
            raise TypeError(f"{type(self).__name__} takes {only}{takes}, got {', '.join(unknown)}")
        param = next(iter(model.parameters()), None)
        if param is not None and param.device != x.device:
            raise ValueError(f"the model is on {param.device} but x is on {x.device}")

    def _measure(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, chunk: Chunk
    ) -> AttackResult:
        """What every attack gets: x_adv in the box, success from one forward pass on it by the
        attack's criterion, norms of the returned perturbation."""
        x_adv = x_adv.detach().clamp(0, 1)
        with torch.no_grad():
            logits = model(x_adv)
        success = self.criterion(logits, y, chunk.extras).bool()
        if self.restore_failures:
            x_adv = torch.where(per_example(success, x_adv), x_adv, x)
        extras = {**chunk.extras, **self.measurements(logits, success, chunk.extras)}
        return make_result(
            x, x_adv, success, self.norm, chunk.iterations, chunk.grad_evals, **extras
        )

    def describe(self) -> dict[str, Any]:
        """Name and hyper-parameters, for registry entries and JSON reports."""
        return {
            "attack": self.name,
            "norm": getattr(self, "norm", None),
            **dataclasses.asdict(self),
        }


def _is_per_example(value: Any, n: int) -> bool:
    """A tensor with one row per example: cut to each chunk."""
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and len(value) == n


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """Reject what would make an attack's result meaningless."""
    if not x.is_floating_point() or x.dim() != 4:
        raise ValueError(f"x must be a float tensor N×C×H×W, got {x.dtype} {tuple(x.shape)}")
    if y.dim() != 1 or len(y) != len(x) or y.is_floating_point():
        raise ValueError(f"y must be N integer labels for {len(x)} inputs, got {tuple(y.shape)}")
    if len(x) and (x.min() < -BOX_TOLERANCE or x.max() > 1 + BOX_TOLERANCE):
        raise ValueError("x must lie in [0, 1]")


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
        norms=threat.norm(norm).distance(x_adv - x),
        iterations=iterations.long(),
        grad_evals=grad_evals.long(),
        norm=norm,
        extras=extras,
    )


# -- shared numerics ----------------------------------------------------------------------------


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
    gradients (m×N×C×H×W). One forward pass, then :func:`logit_gradients`. Never a loop over
    examples.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        picked = logits if classes is None else logits.gather(1, classes)
        grads = logit_gradients(picked, x)
    return picked.detach(), grads


def logit_gradients(
    logits: torch.Tensor, x: torch.Tensor, *, keep_graph: bool = False
) -> torch.Tensor:
    """The input gradient of each column of ``logits`` (N×m, a graph from leaf ``x``): m×N×….

    For batches of ``LOOP_BATCH`` or more, one backward per column through the same graph (vmap
    has no batching rule for convolution and max-pool backward and falls back to a slower
    loop: 1.4–1.8× slower on LeNet-5 at batch 100), else one vmapped backward. First order;
    ``keep_graph`` leaves the graph for the caller.
    """
    m = logits.shape[1]
    if len(x) >= LOOP_BATCH:
        grads = x.new_empty(m, *x.shape)
        for j in range(m):
            (grads[j],) = torch.autograd.grad(
                logits[:, j].sum(), x, retain_graph=keep_graph or j < m - 1
            )
        return grads
    seeds = torch.eye(m, device=x.device, dtype=logits.dtype)[:, None, :]
    (grads,) = torch.autograd.grad(
        logits,
        x,
        grad_outputs=seeds.expand(m, len(x), m),
        is_grads_batched=True,
        retain_graph=keep_graph,
    )
    return grads


def boundary_distances(
    logits: torch.Tensor,
    grads: torch.Tensor,
    own: torch.Tensor,
    norm: threat.Norm = threat.NORM_OBJECTS["l2"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DeepFool's linearisation (eq. 2.18) from logits (n×m) and their gradients (m×n×…).

    For every class j against class ``own`` (one index per example): f_j = z_j − z_own,
    w_j = ∇z_j − ∇z_own, and the distance |f_j| / ‖w_j‖_* (the dual of ``norm``) to the
    linearised boundary. Returns the distances n×m (inf at ``own``), w (m×n×D) and ‖w‖_* (n×m).
    """
    rows = torch.arange(len(logits), device=logits.device)
    flat = grads.flatten(2)  # m×n×D
    f = logits - logits[rows, own][:, None]  # n×m
    w = flat - flat[own, rows][None]  # m×n×D
    w_norm = norm.dual(w).T.clamp_min(_TINY)  # n×m
    dist = f.abs() / w_norm
    dist[rows, own] = float("inf")
    return dist, w, w_norm


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """m = z_y − max_{j≠y} z_j per example (eq. 5.2): misclassified ⇔ m ≤ 0 (ties aside)."""
    own = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return own - others.amax(1)


def box_project(x: torch.Tensor, r: torch.Tensor, overshoot: float) -> torch.Tensor:
    """Shrink ``r`` so that x + (1+os)·r stays in [0,1] (chapter 4 code, methods.md §4.2)."""
    return ((x + (1 + overshoot) * r).clamp(0, 1) - x) / (1 + overshoot)


ADAM_BETAS = (0.9, 0.999)  # Kingma & Ba's defaults (C&W's reference code; PDPGD's later code)
ADAM_EPS = 1e-8


def adam_moments(
    m: torch.Tensor, v: torch.Tensor, g: torch.Tensor, t: int | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Update Adam's moments ``m``, ``v`` in place with gradient ``g``; the bias-corrected
    m̂, v̂ after ``t`` steps (an int, or one count per example)."""
    b1, b2 = ADAM_BETAS
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    if isinstance(t, torch.Tensor):
        return m / per_example(1 - b1**t, m), v / per_example(1 - b2**t, v)
    return m / (1 - b1**t), v / (1 - b2**t)
