"""Writes to the model registry: training a network and recording what came out."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django.core.files import File
from django.db import transaction

from robustness import attacks, evaluation, load_model, runtime
from robustness.evaluation import EVALUATION_DEFAULTS, error_rate
from robustness.registry.files import (
    RegistryError,
    checkpoint_file,
    dataset_load,
    device_for,
    run_dir,
)
from robustness.registry.models import NAME_PATTERN, TrainedModel
from robustness.training import Callbacks, EpochStats, TrainConfig, fit

if TYPE_CHECKING:
    from robustness.attacks.fgsm import FGSM


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
        _share_checkpoint(self.row.name)
        self.row.epochs_done = stats.epoch
        self.row.history = history
        self.row.save(update_fields=["epochs_done", "history", "updated"])
        self.inner.on_epoch_end(stats, history)


def artifact_storage() -> Any:
    """The storage the registry's checkpoints live in (the ``artifacts`` alias)."""
    return TrainedModel._meta.get_field("checkpoint").storage


def shared_checkpoint_name(name: str) -> str:
    """Where a run's per-epoch checkpoint is shared (the artifacts storage), for any host."""
    return f"runs/{name}/last.pt"


def _share_checkpoint(name: str) -> None:
    """Copy the epoch's local checkpoint to the artifacts storage (replacing the last one), so
    a run whose worker died resumes from it on any host."""
    local = run_dir(name) / "last.pt"
    storage = artifact_storage()
    target = shared_checkpoint_name(name)
    if storage.exists(target):
        storage.delete(target)
    with open(local, "rb") as handle:
        storage.save(target, File(handle))


def _fetch_checkpoint(name: str) -> bool:
    """The shared per-epoch checkpoint into the local run folder, if one was shared."""
    storage = artifact_storage()
    target = shared_checkpoint_name(name)
    if not storage.exists(target):
        return False
    local = run_dir(name) / "last.pt"
    local.parent.mkdir(parents=True, exist_ok=True)
    with storage.open(target, "rb") as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return True


def model_delete(*, row: TrainedModel) -> None:
    """Remove a registry entry with its stored checkpoints and local run folder."""
    if row.checkpoint:
        row.checkpoint.delete(save=False)
    if artifact_storage().exists(shared_checkpoint_name(row.name)):
        artifact_storage().delete(shared_checkpoint_name(row.name))
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
    if not local.exists() and _fetch_checkpoint(row.name):
        return config  # another host's run died: continue from its last epoch
    if not local.exists() and row.checkpoint:
        # Resuming on another machine: fetch the stored checkpoint into the run folder.
        local.parent.mkdir(parents=True, exist_ok=True)
        with row.checkpoint.open("rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return config


def model_train(
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
    torch_device = device_for(device)
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

    dataset = dataset_load(config.dataset)  # a missing source fails before the registry changes

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
        row.mark(TrainedModel.Status.INTERRUPTED, "interrupted; resume with --resume")
        raise
    except Exception as exc:
        row.mark(TrainedModel.Status.FAILED, f"{type(exc).__name__}: {exc}")
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


# --------------------------------------------------------------------------------------------
# Robustness evaluation of registered models


def _load_for_attack(row: TrainedModel, device: str | None, split: str, limit: int | None):
    torch_device = device_for(device)
    with checkpoint_file(row) as path:
        model = load_model(path, device=torch_device)
    dataset = dataset_load(row.dataset)
    part = getattr(dataset, split).limit(limit).to(torch_device)
    return model, part, torch_device


def model_evaluate(
    *,
    row: TrainedModel,
    attack_names: list[str],
    limit: int | None = 1000,
    split: str = "test",
    device: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress_for: Callable[[str], evaluation.Progress | None] | None = None,
) -> dict[str, Any]:
    """Clean error and the thesis's robustness metrics of ``row``; stored in its metrics.

    ``progress_for(name)`` may return a ``(done, total)`` callback for each attack's run.
    """
    overrides = overrides or {}
    unknown = sorted(set(attack_names) - set(EVALUATION_DEFAULTS))
    if unknown:
        raise RegistryError(
            f"evaluate supports {', '.join(EVALUATION_DEFAULTS)}; not {', '.join(unknown)}"
        )
    stray = sorted(set(overrides) - set(attack_names))
    if stray:
        raise RegistryError(f"parameters given for {stray[0]!r}, which is not evaluated")
    configured = {
        name: attacks.build(name, **{**EVALUATION_DEFAULTS[name], **overrides.get(name, {})})
        for name in attack_names
    }
    model, part, torch_device = _load_for_attack(row, device, split, limit)
    correct = evaluation.predict(model, part.x) == part.y
    report: dict[str, Any] = {
        "model": row.name,
        "split": split,
        "examples": len(part),
        "device": runtime.describe_device(torch_device),
        "clean_error": 1.0 - correct.float().mean().item(),
    }
    for name, attack in configured.items():
        timed = evaluation.run_attack(
            attack, model, part.x, part.y, progress=progress_for(name) if progress_for else None
        )
        if name == "fgsm":
            entry = {
                "eps": cast("FGSM", attack).eps,
                "error": 1.0 - (correct & ~timed.result.success).float().mean().item(),
            }
        else:
            entry = evaluation.average_robustness(part.x, timed.result, correct)
        entry.update(
            seconds=timed.seconds,
            images_per_second=len(part) / timed.seconds if timed.seconds else None,
            params=attack.describe(),
        )
        report[name] = entry
    row.metrics = {**row.metrics, "robustness": report}
    row.save(update_fields=["metrics", "updated"])
    return report


def model_attack(
    *,
    row: TrainedModel,
    attack_name: str,
    params: dict[str, Any],
    limit: int | None = 1000,
    split: str = "test",
    device: str | None = None,
    thresholds: list[float] | None = None,
    progress: evaluation.Progress | None = None,
) -> dict[str, Any]:
    """Run one attack on ``row`` and summarise it the chapter 5 way; stored in its metrics."""
    attack = attacks.build(attack_name, **params)
    model, part, torch_device = _load_for_attack(row, device, split, limit)
    correct = evaluation.predict(model, part.x) == part.y
    timed = evaluation.run_attack(attack, model, part.x, part.y, progress=progress)
    summary = evaluation.min_norm_summary(timed.result, correct, thresholds)
    report = {
        "model": row.name,
        "attack": attack_name,
        "norm": summary.pop("norm"),
        **summary,
        "clean_error": 1.0 - correct.float().mean().item(),
        "examples": len(part),
        "split": split,
        "device": runtime.describe_device(torch_device),
        "seconds": timed.seconds,
        "images_per_second": len(part) / timed.seconds if timed.seconds else None,
        "params": attack.describe(),
    }
    key = f"{attack_name}-{report['norm']}"
    row.metrics = {**row.metrics, "attacks": {**row.metrics.get("attacks", {}), key: report}}
    row.save(update_fields=["metrics", "updated"])
    return report
