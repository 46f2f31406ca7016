"""Adversary critic (thesis chapter 4, §4.4–4.5, eq. 4.3–4.5; methods.md §5).

A k-output critic learns to tell natural images of class k from adversarial images that the
classifier puts in class k (eq. 4.3). The classifier is trained so that its own high-confidence
adversarial examples fool the critic (eq. 4.4) and map back to the original under a second
attack (adversarial cycle consistency, eq. 4.5). The attack (methods.md §4.4, training version)
is unrolled and differentiable, so the classifier's loss reaches its parameters through it
(second order). The first ``pretrain_epochs`` epochs are plain cross-entropy plus a small weight
decay; they also initialise the running per-class confidences that set the attack's target C.

Per critic-phase batch, :meth:`AdversaryCritic.loss` makes one critic step with the defense's
own optimiser and returns the classifier's loss; the training loop steps the classifier.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from robustness import nets
from robustness.attacks.high_confidence import closest_target_from, hc_differentiable
from robustness.defenses.base import BatchLoss, Defense
from robustness.errors import ConfigError

# §4.5: the critic's learning rate is halved every 40 epochs of a 100-epoch run.
CRITIC_MILESTONES = (40, 80)
CRITIC_GAMMA = 0.5
CRITIC_BETAS = (0.5, 0.999)  # §4.5: Adam with beta1 = 0.5
UNSEEN_CONFIDENCE = 1.0  # a class never predicted yet (the authors' code starts at ones)


@dataclass(frozen=True)
class CriticParams:
    # λ of eq. 4.4; None: 0.5 for MLPs (arch "mlp*"), 0.1 for convolutional nets such as
    # LeNet-5 (§4.5, chosen on validation data), resolved from the model in setup().
    weight: float | None = None
    rec_weight: float = 0.01  # §4.5: λ_rec of the cycle-consistency loss (eq. 4.5)
    grad_penalty: float = 10.0  # §4.5: λ_grad of the critic's gradient-norm penalty
    attack_steps: int = 5  # §4.5: iterations of the training attack
    overshoot: float = 0.05  # methods.md §4.4, training version
    critic_lr: float = 1e-3  # §4.5: critic Adam learning rate
    pretrain_epochs: int = 1  # §4.5: 1 epoch of pre-training initialises the confidences
    pretrain_weight_decay: float = 5e-6  # methods.md §5: CE + 5e-6·Σ‖W‖²/2 (not the last layer)
    ema_momentum: float = 0.5  # methods.md §5: running class confidence, bias-corrected
    # §4.5: the critic's lr is halved after these epochs (40, 80 of 100); a shortened run
    # (the research preset) scales them with the classifier's.
    milestones: tuple[int, ...] = CRITIC_MILESTONES

    def __post_init__(self) -> None:
        if self.weight is not None and (isinstance(self.weight, bool) or self.weight < 0):
            raise ConfigError(f"weight must be >= 0 or None, got {self.weight!r}")
        for key in ("rec_weight", "grad_penalty", "overshoot", "pretrain_weight_decay"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.attack_steps < 1:
            raise ConfigError(f"attack_steps must be >= 1, got {self.attack_steps}")
        if self.critic_lr <= 0:
            raise ConfigError(f"critic_lr must be positive, got {self.critic_lr}")
        if self.pretrain_epochs < 0:
            raise ConfigError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ConfigError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")
        milestones = tuple(int(m) for m in self.milestones)  # JSON gives a list
        if any(m < 1 for m in milestones) or list(milestones) != sorted(milestones):
            raise ConfigError(f"milestones must be increasing epochs >= 1, got {milestones}")
        object.__setattr__(self, "milestones", milestones)


def weight_penalty(model: nn.Module) -> torch.Tensor:
    """Σ‖W‖²/2 over every Linear/Conv2d weight except the last layer's (biases excluded)."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][:-1]
    if not weights:
        return torch.zeros(())
    return torch.stack([w.square().sum() for w in weights]).sum() / 2


def gradient_penalty(
    critic: nn.Module, x: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's logit for ``classes`` at ``x`` and per-example (‖∇ₓ logit‖₂ − 1)².

    The penalty keeps its graph (create_graph) so it can be minimised; ``x`` is a constant.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logit = critic(x).gather(1, classes[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(logit.sum(), x, create_graph=True)
    return logit, (grad.flatten(1).norm(dim=1) - 1).square()


def critic_loss(
    critic: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    adv_pred: torch.Tensor,
    grad_penalty: float,
) -> torch.Tensor:
    """Eq. 4.3 with the gradient penalty: BCE(D(x)[y], 1) + BCE(D(x̂)[f(x̂)], 0) + λ(GP_r + GP_a).

    Real and adversarial inputs go through the critic in one batch; each penalty is the mean
    over its own half (no interpolation, §4.4). Inputs are constants.
    """
    n = len(x)
    logit, penalty = gradient_penalty(
        critic, torch.cat([x, x_adv.detach()]), torch.cat([y, adv_pred])
    )
    real = F.binary_cross_entropy_with_logits(logit[:n], torch.ones_like(logit[:n]))
    fake = F.binary_cross_entropy_with_logits(logit[n:], torch.zeros_like(logit[n:]))
    return real + fake + grad_penalty * (penalty[:n].mean() + penalty[n:].mean())


class AdversaryCritic(Defense):
    """Classifier and adversary critic trained jointly (chapter 4); see the module docstring."""

    name = "critic"
    Params = CriticParams
    schedule = "ch4"

    def __init__(self, params: CriticParams | None = None) -> None:
        super().__init__(params)
        self.critic: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.weight: float | None = self.params.weight
        self.epoch = 1
        self._init = "torch"
        self._confidence_ema: torch.Tensor | None = None  # biased EMA, k
        self._confidence_updates: torch.Tensor | None = None  # updates per class, k (int64)

    # ------------------------------------------------------------------ lifecycle

    def setup(self, model: nn.Module, *, device: torch.device, epochs: int) -> None:
        """Resolve λ from the architecture and build the critic (if the model says its shape)."""
        config = getattr(model, "blindspot_config", {}) or {}
        self._init = config.get("init", "torch")
        if self.weight is None:
            arch = config.get("arch")
            if arch is None:
                raise ConfigError("weight=None needs model.blindspot_config['arch']; pass weight=")
            self.weight = 0.5 if str(arch).startswith("mlp") else 0.1  # §4.5
        if "in_shape" in config and "num_classes" in config:
            self._build(tuple(config["in_shape"]), int(config["num_classes"]), torch.device(device))

    def _build(self, in_shape: tuple[int, ...], num_classes: int, device: torch.device) -> None:
        """The critic network, its Adam optimiser and step schedule, empty confidences."""
        self.critic = nets.build(
            "critic", in_shape=in_shape, num_classes=num_classes, init=self._init
        ).to(device)
        self.optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=self.params.critic_lr, betas=CRITIC_BETAS
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, list(self.params.milestones), gamma=CRITIC_GAMMA
        )
        self._confidence_ema = torch.zeros(num_classes, device=device)
        self._confidence_updates = torch.zeros(num_classes, dtype=torch.long, device=device)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def end_epoch(self, epoch: int) -> None:
        """Step the critic's schedule every epoch, pre-training included, like the classifier's."""
        if self.scheduler is None:
            return
        with warnings.catch_warnings():  # pre-training epochs never step the critic's optimiser
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()`"))
            self.scheduler.step()

    @property
    def pretraining(self) -> bool:
        return self.epoch <= self.params.pretrain_epochs

    # ------------------------------------------------------------------ confidences

    def update_confidence(self, logits: torch.Tensor) -> None:
        """EMA of the batch's mean max-softmax confidence per predicted class (no graph)."""
        assert self._confidence_ema is not None and self._confidence_updates is not None  # _build
        probs = logits.detach().softmax(1)
        conf, pred = probs.max(1)
        k = probs.shape[1]
        sums = torch.zeros(k, device=conf.device, dtype=conf.dtype).scatter_add_(0, pred, conf)
        counts = torch.zeros_like(sums).scatter_add_(0, pred, torch.ones_like(conf))
        present = counts > 0
        m = self.params.ema_momentum
        updated = m * self._confidence_ema + (1 - m) * sums / counts.clamp_min(1)
        self._confidence_ema = torch.where(present, updated, self._confidence_ema)
        self._confidence_updates = self._confidence_updates + present.long()

    def running_confidence(self) -> torch.Tensor:
        """Bias-corrected running confidence per class (k); never-seen classes read 1."""
        if self._confidence_ema is None or self._confidence_updates is None:
            raise RuntimeError("the critic defense is not set up yet")
        n = self._confidence_updates
        correction = 1 - self.params.ema_momentum ** n.to(self._confidence_ema.dtype)
        value = self._confidence_ema / correction.clamp_min(torch.finfo(correction.dtype).tiny)
        return torch.where(n > 0, value, torch.full_like(value, UNSEEN_CONFIDENCE))

    # ------------------------------------------------------------------ losses

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        """Pre-training loss, or one critic step and the classifier's loss (methods.md §5, 1–4).

        The running confidences take this batch in before they are read (as the authors' code).
        """
        if self.weight is None:
            raise RuntimeError("call setup(model, ...) before loss()")
        # The clean pass is taken at x as a leaf that requires grad once training proper
        # starts: its graph also gives the closest target's gradients and the attack's
        # first step, so neither recomputes the forward (bench/critic_cost.py).
        x_in = x if self.pretraining else x.detach().requires_grad_(True)
        logits = model(x_in)
        if self.critic is None:  # the model did not say its input shape: take the batch's
            self._build(tuple(x.shape[1:]), logits.shape[1], x.device)
        self.update_confidence(logits)
        ce = F.cross_entropy(logits, y)
        if self.pretraining:
            penalty = weight_penalty(model).to(ce)
            return BatchLoss(loss=ce + self.params.pretrain_weight_decay * penalty, logits=logits)

        p = self.params
        clean_conf, pred = logits.softmax(1).max(1)
        # 1. Target: the closest boundary from the prediction; C: its class's running mean.
        target = closest_target_from(logits, x_in, pred)
        confidence = self.running_confidence()[target]
        # 2. High-confidence attack with its graph (second order into the classifier).
        x_adv = hc_differentiable(
            model,
            x,
            target,
            confidence,
            steps=p.attack_steps,
            overshoot=p.overshoot,
            start=(x_in, logits),
        )
        # The prediction at x̂, taken with a graph: it is also the cycle attack's first step.
        x_adv_in = x_adv.detach().requires_grad_(True)
        adv_logits = model(x_adv_in)
        adv_pred = adv_logits.detach().argmax(1)
        # 3. One critic step on constants.
        self.critic_step(x, y, x_adv.detach(), adv_pred)
        # 4. The classifier's loss. The attack does not depend on the critic and the classifier
        # has not changed since step 2, so step 2's x̂ (graph included) is the recomputed x̂.
        adv, rec = self.adversarial_terms(
            model, x, x_adv, adv_pred, pred, clean_conf, start=(x_adv_in, adv_logits)
        )
        return BatchLoss(loss=ce + self.weight * adv + p.rec_weight * rec, logits=logits)

    def critic_step(
        self, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, adv_pred: torch.Tensor
    ) -> torch.Tensor:
        """One Adam step of the critic on eq. 4.3 + gradient penalty; returns that loss."""
        assert self.critic is not None and self.optimizer is not None
        params = list(self.critic.parameters())
        loss = critic_loss(self.critic, x, y, x_adv, adv_pred, self.params.grad_penalty)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=params)  # constants in, so nothing reaches the classifier
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def adversarial_terms(
        self,
        model: nn.Module,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        adv_pred: torch.Tensor,
        pred: torch.Tensor,
        clean_conf: torch.Tensor,
        start: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 4.4's critic term and eq. 4.5's cycle term, each a mean over successful attacks.

        Success: the prediction of x̂ differs from the clean prediction. Fooling the critic is
        softplus(−D(x̂)[f(x̂)]) (BCE with label 1); the cycle term is ‖x − x_rec‖₂² with x_rec
        the attack from detached x̂ back to ``pred`` at the clean confidence (with its graph).
        Both are 0 when no attack succeeded. The critic is a constant here. ``start`` is the
        classifier's pass at detached x̂ (leaf, logits), the cycle attack's first step.
        """
        assert self.critic is not None
        p = self.params
        success = adv_pred != pred
        count = success.sum().clamp_min(1).to(x.dtype)
        zero = torch.zeros((), device=x.device, dtype=x.dtype)
        adv = rec = zero
        if self.weight:
            frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
            logit = functional_call(self.critic, frozen, (x_adv,))
            fool = F.softplus(-logit.gather(1, adv_pred[:, None]).squeeze(1))
            adv = torch.where(success, fool, zero).sum() / count
        if p.rec_weight:
            x_rec = hc_differentiable(
                model,
                x_adv.detach(),
                pred,
                clean_conf,
                steps=p.attack_steps,
                overshoot=p.overshoot,
                start=start,
            )
            dist = (x - x_rec).flatten(1).square().sum(1)
            rec = torch.where(success, dist, zero).sum() / count
        return adv, rec

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        if self.critic is None:
            return {}
        assert self.optimizer is not None and self.scheduler is not None
        config = cast("dict[str, Any]", self.critic.blindspot_config)  # set by nets.build
        return {
            "in_shape": list(config["in_shape"]),
            "num_classes": int(config["num_classes"]),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "confidence_ema": self._confidence_ema,
            "confidence_updates": self._confidence_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        shape = tuple(int(s) for s in state["in_shape"])
        k = int(state["num_classes"])
        if self.critic is None:
            device = state["confidence_ema"].device
            self._build(shape, k, device)
        assert self.critic is not None and self.optimizer is not None
        assert self.scheduler is not None
        config = cast("dict[str, Any]", self.critic.blindspot_config)  # set by nets.build
        if tuple(config["in_shape"]) != shape or config["num_classes"] != k:
            raise ConfigError(
                f"checkpoint's critic is for inputs {shape} and {k} classes, "
                f"this model has {tuple(config['in_shape'])} and {config['num_classes']}"
            )
        device = next(self.critic.parameters()).device
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._confidence_ema = state["confidence_ema"].to(device)
        self._confidence_updates = state["confidence_updates"].to(device)
