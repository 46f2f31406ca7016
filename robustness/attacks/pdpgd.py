"""PDGD and PDPGD minimum-norm attacks (thesis chapter 5, Algorithms 2–3, methods.md §4.5).

Both solve min ‖r‖ s.t. argmax f(x+r) ≠ y, x+r ∈ [0,1] as a two-player game. The primal player
lowers a weighted sum of the norm and a surrogate of the misclassification constraint, built on
the margin m = z_y − max_{j≠y} z_j (misclassified ⇔ m ≤ 0): "hinge" max(0, m) (eq. 5.3, δ = 0)
or "softplus" softplus(m)/ln 2. The dual player keeps, per example, a two-component
log-distribution (λ_norm, λ_loss), λ = λ_norm/λ_loss, and moves it by gradient ascent in the log
domain with the sign of the constraint: λ shrinks (more weight on the loss) while the point is
still classified correctly and grows once it is adversarial; the primal step uses an
exponential moving average of the distribution. Every step's adversarial point with a smaller
norm than the example's best so far is recorded; restarts keep the best.

PDGD (l2, Algorithm 2): Adam on λ̄_norm·‖r‖₂ + λ̄_loss·surrogate, then the box.
PDPGD (Algorithm 3, eq. 5.10): a gradient step on the surrogate alone, then the proximal
operator of μ‖·‖ with μ = λ̄·lr (the norm object's ``prox``, :mod:`robustness.threat`), then
the box. The surrogate's gradient is normalised per example by its largest absolute entry, so
that ``lr`` is the largest change of any pixel in one step whatever the model's logit scale (on
a LeNet-5 for MNIST, normalising by ‖g‖∞, by ‖g‖₂ or not at all reached the same mean linf and
l1 norms within 1%, each at its own best lr; ‖g‖∞ keeps lr in pixel units for every norm).

Options the benchmark decided (LeNet-5 3 epochs on 20k MNIST, var/bench/lenet5-demo.pt, test
images 0–99, 100 steps, mean norm over correct & successful; foolbox FMN at 100 steps: l2 2.17,
linf 0.134, l1 8.01 at 92% success, l0 11.0):
``optimizer="adam"`` (Adam step, then the prox in Adam's diagonal metric, scaled by its
per-example maximum) was worse than plain steps in every norm: linf 0.206 / 0.158 (sgd), l1
15.9 (lr 0.1) and 8.41 (lr 0.5) / 8.27, l0 31.3 (lr 0.5) / 10.5; kept as an option.
``lr_decay="exponential"`` was worse than linear: linf 0.267 / 0.158, l1 9.96 / 8.27. l0's lr
moved from 0.1 to 0.5 (100 steps: 10.5 vs 24.7). What closes the linf gap at 100 steps is the
dual player's start, not the primal step: ``lambda_init=1.0`` gives linf 0.136 and with
``dual_lr=0.3`` 0.137, PDGD 1.60 / 1.87 (l1 8.34, l0 18.5: worse there). The thesis values
0.01 / 0.1 stay the defaults; λ's scale here depends on the ‖g‖∞ normalisation of the
surrogate's gradient, which the thesis did not have. 500 steps, defaults (FMN 500 steps):
PDGD l2 1.58 (2.17), linf 0.1333 (0.1331), l1 7.87 (7.93 at 92% success), l0 10.2 (11.0).

Each run costs ``steps`` forward+backward passes per example by design (the norm keeps being
minimised after the first success); only examples misclassified from the start are skipped.
The returned point of an example is its best recorded adversarial point, or x where none was
found; ``success`` is re-checked on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustness import threat
from robustness.attacks.base import ADAM_EPS, Attack, Chunk, adam_moments, logits_and_grad, margin
from robustness.errors import ConfigError
from robustness.threat import per_example

__all__ = ["DEFAULT_LR", "DEFAULT_LR_ADAM", "PDGD", "PDPGD", "RELAX"]

PDPGD_NORMS = threat.NORMS
LOSSES = ("hinge", "softplus")
INITS = ("zero", "random")
OPTIMIZERS = ("sgd", "adam")
LR_DECAYS = ("linear", "exponential")

#: Initial primal learning rate per attack norm, chosen from the thesis's grid
#: {0.01, 0.05, 0.1, 0.5, 1.0} (§5.4) by the smallest mean norm with the default 500 steps on a
#: LeNet-5 trained one epoch on MNIST (97.4% test accuracy), MNIST test images 0–95. Mean norms
#: at these values: PDGD l2 1.51 / 1.55 (images 0–31 / 32–95; DeepFool 1.78 on 32–95),
#: linf 0.130 / 0.129 (DeepFool-linf 0.140), l2 1.53 / 1.56, l1 7.56 / 7.88, l0 9.2 / 10.4.
#: Neighbouring grid values were within ~1% except where noted below.
DEFAULT_LR: dict[str, float] = {
    "pdgd": 0.1,  # Adam; 0.5 tied (1.50 / 1.55) but was worse on a synthetic-data LeNet-5
    "linf": 0.5,  # 1.0 ties; 0.1 0.131; 0.01 0.161
    "l2": 0.5,  # 0.1 and 1.0 tie
    "l1": 0.5,  # 1.0 ties on LeNet-5 but stalls 12% above the optimum on an affine model
    "l0": 0.5,  # 500 steps: 9.6 / 10.4 (0.1: 9.2 / 10.4); 100 steps: 10.5 (0.1: 24.7)
    "l0_pixel": 0.5,  # as l0 (the same operator on one-channel images)
}

#: As DEFAULT_LR for PDPGD with ``optimizer="adam"``.
DEFAULT_LR_ADAM: dict[str, float] = {
    "linf": 0.1,
    "l2": 0.1,
    "l1": 0.1,
    "l0": 0.1,
    "l0_pixel": 0.1,
}

#: Fraction of each PDPGD run spent on the l1 prox before the l0 hard threshold (``relax``).
#: The hard threshold alone keeps the pixels whose first steps were largest and rarely revisits
#: them; a short convex phase picks the support first. Same model and images as DEFAULT_LR,
#: 500 steps, images 0–99 (σ-zero 8.55): relax 0 10.14, 0.15 9.25, 0.3 9.27, 0.5 9.23; with
#: ``optimizer="adam", lr=1.0``: 0.15 8.82, 0.3 8.88, 0 9.19 (100 steps: sgd 10.3 whatever the
#: relax, adam 12.9; σ-zero 9.99).
#: Not for l0_pixel: l1 per entry would break pixels apart (the group relaxation, l2 over a
#: pixel's channels, is not implemented).
RELAX: dict[str, float] = {"l0": 0.15}

_LOG_DUAL_FLOOR = math.log(1e-6)  # each component of the dual distribution stays ≥ 1e-6
_TINY = 1e-12


@dataclass(frozen=True, kw_only=True)
class _PrimalDual(Attack):
    """What PDGD and PDPGD share: schedules, the dual player, restarts and best tracking."""

    steps: int = 500  # §5.4: 500 iterations per run
    lr: float | None = None  # initial primal lr (§5.4 grid); None: DEFAULT_LR for the norm
    lr_final_ratio: float = 0.01  # §5.4: lr decreased linearly to 1e-2 of its initial value
    lambda_init: float = 0.01  # §5.4: initial regularisation weight λ = λ_norm/λ_loss
    dual_lr: float = 0.1  # §5.4: dual learning rate (gradient ascent in the log domain)
    dual_ema: float = 0.9  # §5.4 / methods.md §4.5: EMA decay of the dual variables
    loss: str = "hinge"  # eq. 5.3: max(0, m) (δ = 0); "softplus": softplus(m)/ln 2
    restarts: int = 1  # runs; the thesis also reports 100 (PDGD-100, Table 5.1)
    init: str = "zero"  # first run's start (Algorithms 2–3: r = 0) or "random"
    init_range: float = 0.5  # §5.4.1: later runs start from U(−0.5, 0.5) on MNIST (CIFAR 0.25)
    seed: int | None = 0
    lr_decay: str = "linear"  # §5.4: "linear" (thesis) or "exponential" (later code) to lr·ratio
    finetune: bool = False  # one more run from each example's best (r, λ), lrs ÷ 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(
                f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}"
            )
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.lr is None:
            object.__setattr__(self, "lr", self._default_lr())
        elif not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 < self.lr_final_ratio <= 1:
            raise ConfigError(f"lr_final_ratio must be in (0, 1], got {self.lr_final_ratio}")
        if not self.lambda_init > 0:
            raise ConfigError(f"lambda_init must be positive, got {self.lambda_init}")
        if not self.dual_lr >= 0:
            raise ConfigError(f"dual_lr must be >= 0, got {self.dual_lr}")
        if not 0 <= self.dual_ema < 1:
            raise ConfigError(f"dual_ema must be in [0, 1), got {self.dual_ema}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.restarts < 1:
            raise ConfigError(f"restarts must be >= 1, got {self.restarts}")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if not 0 < self.init_range <= 1:
            raise ConfigError(f"init_range must be in (0, 1], got {self.init_range}")

    # -- what subclasses provide ------------------------------------------------------------
    def _default_lr(self) -> float:
        raise NotImplementedError

    def _new_state(self, r: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-run optimiser state for a working batch shaped like ``r``."""
        return {}

    def _primal_step(
        self,
        ball: threat.Norm,
        r: torch.Tensor,
        grad: torch.Tensor,
        weights: torch.Tensor,
        lr: float,
        step: int,
        state: dict[str, torch.Tensor],
        box: threat.Box,
    ) -> torch.Tensor:
        """New perturbation (before the box) from ``r``, the surrogate's gradient and the
        smoothed dual distribution ``weights`` (N×2: λ̄_norm, λ̄_loss); ``ball`` is the norm and
        ``box`` the perturbations the image box allows, (−x, 1 − x)."""
        raise NotImplementedError

    # -- the shared loop --------------------------------------------------------------------
    def _surrogate(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m = margin(logits, y)
        if self.loss == "hinge":
            return m.clamp_min(0)
        return F.softplus(m) / math.log(2)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
    ) -> torch.Tensor:
        """Attack one chunk: ``restarts`` runs of ``steps`` steps on the correct examples."""
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        x_adv = x.clone()
        lam_out = torch.full((len(x),), self.lambda_init, dtype=x.dtype, device=x.device)
        idx = correct.nonzero().squeeze(1)
        if len(idx):
            best_x, lam_last = self._attack(model, x[idx], y[idx], chunk)
            x_adv[idx] = best_x
            runs = self.restarts + int(self.finetune)
            chunk.count(idx, iterations=self.steps * runs, grad_evals=self.steps * runs)
            lam_out[idx] = lam_last
        chunk.extras["lambda"] = lam_out
        return x_adv

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: Chunk
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Best adversarial points found over all runs (x where none) and the final λ̄."""
        assert self.lr is not None  # __post_init__ fills in the norm's default
        m = len(x)
        ball = threat.norm(self.norm)
        runs = self.restarts + int(self.finetune)
        best_x = x.clone()
        best = torch.full((m,), float("inf"), dtype=x.dtype, device=x.device)
        lam_bar = x.new_full((m,), self.lambda_init)
        log_floor = torch.tensor(_LOG_DUAL_FLOOR, dtype=x.dtype, device=x.device)
        box = (-x, 1 - x)

        best_lam = lam_bar.clone()

        def record(point: torch.Tensor, logits: torch.Tensor, lam: torch.Tensor) -> None:
            size = ball.distance(point - x)
            better = (logits.argmax(1) != y) & (size < best)
            best.copy_(torch.where(better, size, best))
            best_x.copy_(torch.where(per_example(better, x), point, best_x))
            best_lam.copy_(torch.where(better, lam, best_lam))

        for run in range(runs):
            lr0, dual_lr, lam0 = self.lr, self.dual_lr, x.new_full((m,), self.lambda_init)
            if run == self.restarts:  # fine-tuning from the best (r, λ), 100× smaller lrs
                r, lr0, dual_lr = best_x - x, self.lr / 100, self.dual_lr / 100
                lam0 = torch.where(best.isfinite(), best_lam, lam0)
            elif run == 0 and self.init == "zero":
                r = torch.zeros_like(x)
            else:
                u = torch.rand(x.shape, generator=chunk.generator, device=x.device, dtype=x.dtype)
                r = ((2 * u - 1) * self.init_range + x).clamp(0, 1) - x
            # Dual player: log(λ_norm, λ_loss) with λ_norm/λ_loss = λ0.
            log_w = torch.stack([torch.zeros_like(best), -lam0.log()], 1).log_softmax(1)
            log_w = log_w.maximum(log_floor)
            weights = log_w.exp()  # the EMA the primal player uses
            state = self._new_state(r)
            for step in range(self.steps):
                point = (x + r).clamp(0, 1)
                logits, _, grad = logits_and_grad(model, point, lambda z: self._surrogate(z, y))
                record(point, logits, weights[:, 0] / weights[:, 1])
                frac = step / max(self.steps - 1, 1)
                if self.lr_decay == "linear":
                    lr = lr0 * (1 - (1 - self.lr_final_ratio) * frac)
                else:
                    lr = lr0 * self.lr_final_ratio**frac
                r = self._primal_step(ball, point - x, grad, weights, lr, step, state, box)
                r = (x + r).clamp(0, 1) - x
                # Constraint sign: +1 while still correct (λ_loss up, λ down), −1 once adversarial.
                violated = (logits.argmax(1) == y).to(x.dtype) * 2 - 1
                log_w[:, 1] += dual_lr * violated
                log_w = log_w.log_softmax(1).maximum(log_floor)
                weights = self.dual_ema * weights + (1 - self.dual_ema) * log_w.exp()
                chunk.advance(run * self.steps + step + 1, runs * self.steps)
            point = (x + r).clamp(0, 1)
            lam_bar = weights[:, 0] / weights[:, 1]
            with torch.no_grad():
                record(point, model(point), lam_bar)
        return best_x, lam_bar


@dataclass(frozen=True, kw_only=True)
class PDGD(_PrimalDual):
    """Primal-dual gradient descent (Algorithm 2): minimum l2 perturbation with Adam."""

    name: ClassVar[str] = "pdgd"
    norm: ClassVar[str] = "l2"
    norms: ClassVar[tuple[str, ...]] = ("l2",)

    def _default_lr(self) -> float:
        return DEFAULT_LR["pdgd"]

    def _new_state(self, r: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"m": torch.zeros_like(r), "v": torch.zeros_like(r)}

    def _primal_step(
        self,
        ball: threat.Norm,
        r: torch.Tensor,
        grad: torch.Tensor,
        weights: torch.Tensor,
        lr: float,
        step: int,
        state: dict[str, torch.Tensor],
        box: threat.Box,
    ) -> torch.Tensor:
        # ∇ of λ̄_norm·‖r‖₂ + λ̄_loss·surrogate; ‖r‖'s gradient r/‖r‖ (l2's steepest
        # direction) is taken as 0 at r = 0.
        g = per_example(weights[:, 0], r) * ball.steepest(r) + per_example(weights[:, 1], r) * grad
        m_hat, v_hat = adam_moments(state["m"], state["v"], g, step + 1)
        return r - lr * m_hat / v_hat.sqrt().add_(ADAM_EPS)


@dataclass(frozen=True, kw_only=True)
class PDPGD(_PrimalDual):
    """Primal-dual proximal gradient descent (Algorithm 3, eq. 5.10) for linf, l2, l1, l0 and
    l0_pixel (modified pixels, eq. 5.16)."""

    name: ClassVar[str] = "pdpgd"
    norms: ClassVar[tuple[str, ...]] = PDPGD_NORMS
    norm: str = "linf"  # "linf" | "l2" | "l1" | "l0" | "l0_pixel" (§5.3.1–5.3.4)
    optimizer: str = "sgd"  # "sgd": Algorithm 3; "adam": Adam step, prox in Adam's metric
    # l0: the first ``relax`` fraction of each run's steps uses the l1 prox (the convex
    # relaxation) before the hard threshold; None: RELAX for the norm.
    relax: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.relax is None:
            object.__setattr__(self, "relax", RELAX.get(self.norm, 0.0))
        assert self.relax is not None
        if not 0 <= self.relax < 1:
            raise ConfigError(f"relax must be in [0, 1), got {self.relax}")
        if self.relax and self.norm not in RELAX:
            raise ConfigError(f"relax applies to the l0 norm only, not {self.norm!r}")
        super().__post_init__()

    def _default_lr(self) -> float:
        table = DEFAULT_LR if self.optimizer == "sgd" else DEFAULT_LR_ADAM
        return table[self.norm]

    def _new_state(self, r: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.optimizer == "sgd":
            return {}
        return {"m": torch.zeros_like(r), "v": torch.zeros_like(r)}

    def _primal_step(
        self,
        ball: threat.Norm,
        r: torch.Tensor,
        grad: torch.Tensor,
        weights: torch.Tensor,
        lr: float,
        step: int,
        state: dict[str, torch.Tensor],
        box: threat.Box,
    ) -> torch.Tensor:
        assert self.relax is not None
        if step < self.relax * self.steps:
            ball = threat.norm("l1")
        mu = lr * weights[:, 0] / weights[:, 1]
        if self.optimizer == "sgd":
            # Gradient step on the surrogate alone (normalised: the largest pixel change is
            # lr), then the prox of μ‖·‖ with μ = λ̄·lr (eq. 5.10).
            scale = grad.flatten(1).abs().amax(1).clamp_min(_TINY)
            u = r - lr * grad / per_example(scale, r)
            return ball.prox(u, mu, box=box)
        # Adam: u = r − lr·m̂/D with D = sqrt(v̂) + ε is the minimiser of the linearised
        # surrogate plus (1/2lr)‖z − r‖²_D; adding λ̄‖z‖ gives the prox in the metric D.
        # D is scaled by its per-example maximum, so that μ = λ̄·lr is in the same (pixel)
        # units as with "sgd" and a uniform D gives the plain prox.
        m_hat, v_hat = adam_moments(state["m"], state["v"], grad, step + 1)
        denom = v_hat.sqrt()
        denom = denom + ADAM_EPS * per_example(denom.flatten(1).amax(1), r) + _TINY
        u = r - lr * m_hat / denom
        metric = denom / per_example(denom.flatten(1).amax(1), r)
        return ball.prox(u, mu, metric, box)
