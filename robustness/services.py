"""Writes to the model registry: training a network and recording what came out."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction

from robustness import data as datasets
from robustness import runtime
from robustness.evaluation import error_rate
from robustness.models import NAME_PATTERN, TrainedModel
from robustness.training import Callbacks, EpochStats, TrainConfig, fit


class RegistryError(Exception):
    """A registry rule was broken (name taken, nothing to resume); the message is one line."""


def run_dir(name: str) -> Path:
    """Local working folder of a run: its per-epoch checkpoint lives here while training."""
    return Path(settings.BLINDSPOT_RUNS_DIR) / name


def load_dataset(name: str) -> datasets.Dataset:
    """A dataset by name, cached under BLINDSPOT_DATA_DIR."""
    if name == "synthetic":
        return datasets.synthetic()
    return datasets.load(name, cache_dir=settings.BLINDSPOT_DATA_DIR)


class _RegistryCallbacks(Callbacks):
    """Mirror each finished epoch into the registry row (the console reads progress there)."""

    def __init__(self, row: TrainedModel, inner: Callbacks | None) -> None:
        self.row = row
        self.inner = inner or Callbacks()

    def on_start(self, **kw: Any) -> None:
        self.inner.on_start(**kw)

    def on_step(self, **kw: Any) -> None:
        self.inner.on_step(**kw)

    def on_epoch_end(self, stats: EpochStats, history: list[dict[str, Any]]) -> None:
        self.row.epochs_done = stats.epoch
        self.row.history = history
        self.row.save(update_fields=["epochs_done", "history", "updated"])
        self.inner.on_epoch_end(stats, history)


def model_delete(*, row: TrainedModel) -> None:
    """Remove a registry entry with its stored checkpoint and local run folder."""
    if row.checkpoint:
        row.checkpoint.delete(save=False)
    shutil.rmtree(run_dir(row.name), ignore_errors=True)
    row.delete()


def _prepare_resume(row: TrainedModel, epochs: int | None) -> TrainConfig:
    config = TrainConfig.from_dict(row.hyperparameters)
    if epochs is not None:
        if epochs < row.epochs_done:
            raise RegistryError(
                f"{row.name} already has {row.epochs_done} epochs; cannot resume to {epochs}"
            )
        config = TrainConfig.from_dict({**row.hyperparameters, "epochs": epochs})
    local = run_dir(row.name) / "last.pt"
    if not local.exists() and row.checkpoint:
        # Resuming on another machine: fetch the stored checkpoint into the run folder.
        local.parent.mkdir(parents=True, exist_ok=True)
        with row.checkpoint.open("rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return config


def train_model(
    *,
    name: str,
    config: TrainConfig | None = None,
    device: str | None = None,
    resume: bool = False,
    replace: bool = False,
    epochs: int | None = None,
    callbacks: Callbacks | None = None,
) -> TrainedModel:
    """Train (or resume) the model ``name``, register it, evaluate it and store its weights.

    ``resume`` continues a registered run from its last checkpoint, with the registered
    configuration (``epochs`` may extend it); ``replace`` discards a previous entry first.
    """
    if not re.match(NAME_PATTERN, name):
        raise RegistryError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-'")
    if resume and replace:
        raise RegistryError("--resume and --replace exclude each other")
    torch_device = runtime.resolve_device(device or settings.BLINDSPOT_DEVICE)
    row = TrainedModel.objects.filter(name=name).first()

    if resume:
        if row is None:
            raise RegistryError(f"no model named {name!r} to resume")
        config = _prepare_resume(row, epochs)
        if row.status == TrainedModel.Status.DONE and row.epochs_done >= config.epochs:
            return row
        checkpoint_exists = (run_dir(name) / "last.pt").exists()
    else:
        if config is None:
            raise RegistryError("a configuration is needed to train a new model")
        if row is not None and not replace:
            raise RegistryError(
                f"a model named {name!r} already exists; pass --resume to "
                "continue it or --replace to train it again"
            )
        checkpoint_exists = False

    dataset = load_dataset(config.dataset)  # a missing source fails before the registry changes

    with transaction.atomic():
        if row is not None and not resume:
            model_delete(row=row)
            row = None
        if row is None:
            shutil.rmtree(run_dir(name), ignore_errors=True)
            row = TrainedModel.objects.create(
                name=name,
                arch=config.arch,
                defense=config.defense,
                hyperparameters=config.to_dict(),
                dataset=config.dataset,
                seed=config.seed,
            )
        row.status = TrainedModel.Status.RUNNING
        row.device = runtime.describe_device(torch_device)
        row.epochs_total = config.epochs
        row.hyperparameters = config.to_dict()
        row.error = ""
        row.save()

    started = time.perf_counter()
    try:
        result = fit(
            config,
            dataset,
            device=torch_device,
            checkpoint_path=run_dir(name) / "last.pt",
            resume=resume and checkpoint_exists,
            callbacks=_RegistryCallbacks(row, callbacks),
        )
    except KeyboardInterrupt:
        _mark(row, TrainedModel.Status.INTERRUPTED, "interrupted; resume with --resume")
        raise
    except Exception as exc:
        _mark(row, TrainedModel.Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise

    test = dataset.test.to(torch_device)
    row.metrics = {
        **row.metrics,
        "test_error": error_rate(result.model, test.x, test.y),
        "valid_error": result.history[-1]["valid_error"],
        "images_per_second": result.images_per_second,
        "dataset_source": dataset.source,
    }
    row.train_seconds = result.train_seconds
    row.wall_seconds += time.perf_counter() - started
    row.history = result.history
    row.epochs_done = config.epochs
    row.weights_sha256 = result.weights_sha256
    old = row.checkpoint.name if row.checkpoint else None
    with open(result.checkpoint_path, "rb") as handle:
        row.checkpoint.save(f"{name}/{result.weights_sha256[:16]}.pt", File(handle), save=False)
    if old and old != row.checkpoint.name:
        row.checkpoint.storage.delete(old)
    row.status = TrainedModel.Status.DONE
    row.save()
    return row


def _mark(row: TrainedModel, status: str, error: str) -> None:
    row.status = status
    row.error = error
    row.save(update_fields=["status", "error", "updated"])
