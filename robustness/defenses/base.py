"""The interface every defense implements, so the one training loop can run them all.

A defense turns a batch into a loss. It may own extra networks and optimisers (the adversary
critic does); it then saves them through ``state_dict`` so checkpoints stay complete.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robustness.errors import ConfigError


@dataclass(frozen=True)
class NoParams:
    """Hyper-parameters of a defense that has none."""


@dataclass
class BatchLoss:
    """What a defense returns for one batch: the loss to minimise and the clean logits."""

    loss: torch.Tensor
    logits: torch.Tensor


class Defense:
    """Base class: subclasses set ``name`` and ``Params`` and implement :meth:`loss`."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    schedule: ClassVar[str] = "ch3"  # optimiser schedule of the thesis chapter it comes from

    def __init__(self, params: Any | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def arch_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``nets.build`` (dropout changes the network)."""
        return {}

    def setup(self, model: nn.Module, *, device: torch.device, epochs: int) -> None:
        """Create extra networks/optimisers on ``device``; called once before training."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """Called before each epoch (1-based), e.g. to switch from pre-training to training."""

    def end_epoch(self, epoch: int) -> None:
        """Called after each epoch (1-based) to step the defense's own schedules."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ConfigError(f"defense {self.name!r} keeps no state but a checkpoint holds some")

    def describe(self) -> dict[str, Any]:
        """Name and hyper-parameters, as stored in the registry and every checkpoint."""
        return {"name": self.name, "params": dataclasses.asdict(self.params)}
