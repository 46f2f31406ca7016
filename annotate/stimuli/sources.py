"""What a stimulus set is made from: a finished model's network and a split of its dataset.

Both come from the model registry (checkpoint through the ``artifacts`` storage, data from the
cache); the device is the caller's, else ``settings.BLINDSPOT_DEVICE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from annotate.errors import StimulusError
from annotate.labels import DIGITS
from robustness import load_model
from robustness.data import Split
from robustness.registry.files import checkpoint_file, dataset_load, device_for
from robustness.registry.models import TrainedModel


@dataclass
class Loaded:
    """A model's network on ``device`` and one split of its data (on the CPU; chunks move)."""

    net: nn.Module
    split: Split
    num_classes: int
    device: torch.device


def model_check(model: TrainedModel) -> None:
    """Refuse a model that has not finished training or has no stored checkpoint."""
    if model.status != TrainedModel.Status.DONE:
        raise StimulusError(f"model {model.name!r} is {model.status}, not done")
    if not model.checkpoint:
        raise StimulusError(f"model {model.name!r} has no stored checkpoint")


def network_load(model: TrainedModel, device: str | torch.device | None) -> nn.Module:
    """The model's trained network, in eval mode, on the device."""
    with checkpoint_file(model) as path:
        return load_model(path, device=device_for(device))


def sources_load(model: TrainedModel, split: str, device: str | None) -> Loaded:
    """The model's network on the device and one split of its dataset.

    Refuses a dataset of more classes than the answer alphabet has digits (0–9).
    """
    dataset = dataset_load(model.dataset)
    if dataset.num_classes > len(DIGITS):
        raise StimulusError(
            f"model {model.name!r} is trained on {dataset.num_classes} classes; "
            f"workers answer with the digits 0–{len(DIGITS) - 1}"
        )
    torch_device = device_for(device)
    net = network_load(model, torch_device)
    return Loaded(net, getattr(dataset, split), dataset.num_classes, torch_device)


def source_count(model: TrainedModel, split: str, limit: int | None) -> int:
    """How many source images a set of ``model`` on ``split`` (first ``limit``) attacks."""
    n = len(getattr(dataset_load(model.dataset), split))
    return min(n, limit) if limit else n
