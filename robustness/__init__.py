"""Blindspot's robustness library: MNIST data, the thesis networks, training, attacks.

Plain PyTorch: importing it never imports Django (checked by ``lint-imports``), so notebooks
and scripts can use it alone; every path and device is an argument.

Modules: ``data`` (MNIST, CIFAR-10, synthetic), ``nets`` (network registry), ``training``
(the one loop, resumable), ``defenses/`` and ``attacks/`` (one module per method, by name
through ``plugins``), ``threat`` (norms), ``evaluation`` (metrics and the thesis's protocol),
``checkpoint``, ``runtime`` (device, seeds, determinism), ``modes``, ``tables`` (the thesis's
grids), ``errors`` (the project's one error base). ``registry/`` is the Django app over it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["load_model"]


def load_model(path: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """The trained network in a checkpoint file, in eval mode, on ``device``.

    ``device``: ``auto`` (the default: CUDA when available, else CPU), ``cpu``, ``cuda[:N]``.
    """
    from robustness import checkpoint, nets, runtime

    target = runtime.resolve_device(device)
    state = checkpoint.load(path, map_location="cpu")
    config = dict(state["arch"])
    model = nets.build(config.pop("arch"), **config)
    model.load_state_dict(state["model"])
    return model.to(target).eval()
