"""The one training loop for every defense, with resumable, bit-reproducible checkpoints.

``fit`` keeps the training split on the device as tensors, shuffles with its own seeded
generator, asks the defense for each batch's loss, validates after every epoch and writes a
checkpoint atomically (model, optimiser, scheduler, defense and RNG states). Resuming from
that checkpoint continues exactly where the uninterrupted run would have been.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from robustness import checkpoint, defenses, nets, runtime
from robustness.data import Dataset
from robustness.errors import BlindspotError
from robustness.evaluation import error_rate

# Optimiser schedules of the thesis (methods.md §3). Each is a set of TrainConfig defaults.
SCHEDULES: dict[str, dict[str, Any]] = {
    # Chapter 3: Adam lr 1e-3, multiplied by 0.95 after each epoch.
    "ch3": {"lr": 1e-3, "beta1": 0.9, "lr_decay": "exponential", "gamma": 0.95},
    # Chapter 4: Adam lr 5e-4, beta1 0.5, halved after epochs 40 and 80.
    "ch4": {"lr": 5e-4, "beta1": 0.5, "lr_decay": "step", "gamma": 0.5, "milestones": (40, 80)},
    # No decay: for short experiments and tests.
    "constant": {"lr": 1e-3, "beta1": 0.9, "lr_decay": "none", "gamma": 1.0},
}
LR_DECAYS = ("exponential", "step", "none")


class TrainingError(BlindspotError, RuntimeError):
    """A run cannot start or continue (bad configuration, mismatching checkpoint)."""

    code = "training_refused"


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a run; stored in the registry and in each checkpoint."""

    arch: str
    defense: str = "none"
    defense_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    epochs: int = 3
    batch_size: int = 100  # thesis §3.5 and §4.4: batch 100
    schedule: str = "ch3"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    lr_decay: str = "exponential"
    gamma: float = 0.95
    milestones: tuple[int, ...] = ()
    seed: int = 0
    train_limit: int | None = None
    init: str = "torch"

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise TrainingError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size <= 0:
            raise TrainingError(f"batch size must be positive, got {self.batch_size}")
        if self.train_limit is not None and self.train_limit <= 0:
            raise TrainingError(f"train limit must be positive, got {self.train_limit}")
        if self.lr <= 0:
            raise TrainingError(f"learning rate must be positive, got {self.lr}")
        if self.lr_decay not in LR_DECAYS:
            raise TrainingError(f"unknown lr decay {self.lr_decay!r}; use one of {LR_DECAYS}")
        if self.arch not in nets.NETWORKS:
            raise TrainingError(
                f"unknown network {self.arch!r}; choose one of: {', '.join(nets.names())}"
            )
        if self.init not in nets.INITS:
            raise TrainingError(f"unknown init {self.init!r}; choose one of {nets.INITS}")
        try:
            defenses.parse_params(self.defense, self.defense_params)
        except (ValueError, TypeError) as exc:
            raise TrainingError(str(exc)) from None
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    @classmethod
    def from_schedule(cls, schedule: str = "ch3", **overrides: Any) -> TrainConfig:
        """A config with one of :data:`SCHEDULES` as defaults; ``overrides`` win."""
        if schedule not in SCHEDULES:
            raise TrainingError(
                f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        values = {**SCHEDULES[schedule], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(schedule=schedule, **values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class EpochStats:
    """One row of the training history."""

    epoch: int
    train_loss: float
    train_error: float
    valid_error: float
    lr: float
    seconds: float
    images_per_second: float


class Callbacks:
    """Progress hooks; the command line draws a tqdm bar, the Django layer writes rows."""

    def on_start(self, *, start_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        """Called once, with the first epoch to run (1-based) and the total."""

    def on_step(self, *, epoch: int, step: int, loss: float | None, error: float | None) -> None:
        """After every optimiser step; loss/error are given every ``log_every`` steps."""

    def on_epoch_end(self, stats: EpochStats, history: list[dict[str, Any]]) -> None:
        """After the epoch's checkpoint is on disk."""


@dataclass
class FitResult:
    model: nn.Module
    config: TrainConfig
    history: list[dict[str, Any]]
    train_seconds: float
    images_per_second: float
    weights_sha256: str
    checkpoint_path: Path
    resumed_from_epoch: int


def build_model(config: TrainConfig, data: Dataset, defense: defenses.Defense) -> nn.Module:
    """The network for ``config`` sized for ``data``; seeded so initial weights are fixed."""
    torch.manual_seed(config.seed)
    return nets.build(
        config.arch,
        in_shape=data.input_shape,
        num_classes=data.num_classes,
        init=config.init,
        **defense.arch_kwargs(),
    )


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule of ``config``."""
    if config.lr_decay == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.gamma)
    if config.lr_decay == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, list(config.milestones), gamma=config.gamma
        )
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _rng_payload() -> dict[str, Any]:
    """Global RNG states as tensors and primitives (loadable with weights_only=True)."""
    state = runtime.rng_state()
    name, keys, pos, has_gauss, cached = state["numpy"]
    state["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    name, keys, pos, has_gauss, cached = state["numpy"]
    state = {**state, "numpy": (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)}
    state["torch"] = state["torch"].to("cpu")
    if "cuda" in state:
        state["cuda"] = [s.to("cpu") for s in state["cuda"]]
    runtime.set_rng_state(state)


def fit(
    config: TrainConfig,
    data: Dataset,
    *,
    device: torch.device | str | None = None,
    checkpoint_path: str | Path,
    resume: bool = False,
    callbacks: Callbacks | None = None,
    log_every: int = 20,
) -> FitResult:
    """Train ``config.arch`` under ``config.defense`` on ``data``; checkpoint every epoch.

    With ``resume`` the run continues from ``checkpoint_path`` (which must hold the same
    configuration, apart from a larger number of epochs) and ends with weights bit-identical
    to an uninterrupted run on the same device. Kernels are deterministic during the run; the
    process's settings are restored when it returns.
    """
    with runtime.deterministic():
        return _fit(
            config,
            data,
            device=runtime.resolve_device(device),
            checkpoint_path=Path(checkpoint_path),
            resume=resume,
            callbacks=callbacks or Callbacks(),
            log_every=log_every,
        )


def _fit(
    config: TrainConfig,
    data: Dataset,
    *,
    device: torch.device,
    checkpoint_path: Path,
    resume: bool,
    callbacks: Callbacks,
    log_every: int,
) -> FitResult:
    """:func:`fit`'s loop, run with deterministic kernels."""
    runtime.seed_everything(config.seed)

    defense = defenses.build(config.defense, config.defense_params)
    model = build_model(config, data, defense).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2))
    scheduler = make_scheduler(config, optimizer)
    defense.setup(model, device=device, epochs=config.epochs)
    shuffle = torch.Generator().manual_seed(config.seed)

    history: list[dict[str, Any]] = []
    train_seconds = 0.0
    train_images = 0
    start_epoch = 1
    if resume:
        state = checkpoint.load(checkpoint_path, map_location=device)
        saved = TrainConfig.from_dict(state["config"])
        if dataclasses.replace(saved, epochs=config.epochs) != config:
            raise TrainingError(
                f"{checkpoint_path} was written with a different configuration; "
                "start a new run instead of resuming"
            )
        if state["epoch"] > config.epochs:
            raise TrainingError(
                f"checkpoint is at epoch {state['epoch']}, beyond the "
                f"{config.epochs} epochs asked for"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        defense.load_state_dict(state["defense"])
        shuffle.set_state(state["shuffle_rng"])
        _restore_rng(state["rng"])
        history = list(state["history"])
        train_seconds = float(state["train_seconds"])
        train_images = int(state["train_images"])
        start_epoch = int(state["epoch"]) + 1

    train = data.train.limit(config.train_limit).to(device)
    valid = data.valid.to(device)
    n = len(train)
    steps = -(-n // config.batch_size)
    callbacks.on_start(start_epoch=start_epoch, epochs=config.epochs, steps_per_epoch=steps)

    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        defense.begin_epoch(epoch)
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        wrong = torch.zeros((), device=device, dtype=torch.long)
        lr = optimizer.param_groups[0]["lr"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for step, idx in enumerate(order.split(config.batch_size), start=1):
            x, y = train.x[idx], train.y[idx]
            out = defense.loss(model, x, y)
            if not torch.isfinite(out.loss):
                raise TrainingError(
                    f"loss became {out.loss.item()} at epoch {epoch}, "
                    f"step {step}; lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            # Gradients for the classifier's parameters only: inputs and attack iterates of a
            # defense's graph need none.
            out.loss.backward(inputs=params)
            optimizer.step()
            loss_sum += out.loss.detach() * len(idx)
            wrong += (out.logits.detach().argmax(1) != y).sum()
            if step % log_every == 0 or step == steps:
                seen = min(step * config.batch_size, n)
                callbacks.on_step(
                    epoch=epoch, step=step, loss=loss_sum.item() / seen, error=wrong.item() / seen
                )
            else:
                callbacks.on_step(epoch=epoch, step=step, loss=None, error=None)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        scheduler.step()
        defense.end_epoch(epoch)
        train_seconds += seconds
        train_images += n
        stats = EpochStats(
            epoch=epoch,
            train_loss=loss_sum.item() / n,
            train_error=wrong.item() / n,
            valid_error=error_rate(model, valid.x, valid.y),
            lr=lr,
            seconds=seconds,
            images_per_second=n / seconds if seconds > 0 else float("inf"),
        )
        history.append(dataclasses.asdict(stats))
        checkpoint.save(
            {
                "config": config.to_dict(),
                "arch": dict(cast("dict[str, Any]", model.blindspot_config)),
                "defense": defense.state_dict(),
                "defense_info": defense.describe(),
                "dataset": {"name": data.name, "source": data.source},
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "shuffle_rng": shuffle.get_state(),
                "rng": _rng_payload(),
                "history": history,
                "train_seconds": train_seconds,
                "train_images": train_images,
            },
            checkpoint_path,
        )
        callbacks.on_epoch_end(stats, history)

    model.eval()
    return FitResult(
        model=model,
        config=config,
        history=history,
        train_seconds=train_seconds,
        images_per_second=train_images / train_seconds if train_seconds > 0 else 0.0,
        weights_sha256=checkpoint.weights_sha256(model.state_dict()),
        checkpoint_path=checkpoint_path,
        resumed_from_epoch=start_epoch - 1,
    )
