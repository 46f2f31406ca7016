"""Robustness metrics. This module starts with clean accuracy; attack metrics build on it."""

from __future__ import annotations

import torch
from torch import nn

from robustness.modes import eval_mode


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
