"""The registry's Celery tasks: train, evaluate, attack, one reproduction cell.

Each carries a job id only (:mod:`robustness.registry.jobs`); its parameters are names. A
training run holds the run lock of its model, so a task delivered twice trains once: the second
delivery waits (it is retried later) while the first lives, and takes over from the last
checkpoint if the first died.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from robustness.registry import jobs
from robustness.registry.models import Job, TrainedModel
from robustness.registry.reproduction import reproduce_cell
from robustness.registry.services import model_attack, model_evaluate, model_train
from robustness.training import Callbacks, EpochStats, TrainConfig

BUSY_RETRY_S = 5


class JobCallbacks(Callbacks):
    """Training progress into the job row (steps done of all steps), a line per epoch."""

    def __init__(self, progress: jobs.Progress) -> None:
        self.progress = progress
        self.done = 0
        self.total = 0

    def on_start(self, *, start_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        self.done = (start_epoch - 1) * steps_per_epoch
        self.total = epochs * steps_per_epoch
        self.progress(self.done, self.total, f"epochs {start_epoch}..{epochs}", force=True)

    def on_step(self, *, epoch: int, step: int, loss: float | None, error: float | None) -> None:
        self.done += 1
        self.progress(self.done, self.total)

    def on_epoch_end(self, stats: EpochStats, history: list[dict[str, Any]]) -> None:
        line = (
            f"epoch {stats.epoch}: loss {stats.train_loss:.4f}, valid error "
            f"{100 * stats.valid_error:.2f}%"
        )
        self.progress(self.done, self.total, line, force=True)


def locked(key: str, progress: jobs.Progress) -> str:
    """Take the run lock ``key`` for this process (Busy when a live process holds it)."""
    me = jobs.whoami()
    if not jobs.run_claim(key, me):
        raise jobs.Busy(key)
    progress.beats.append(lambda: jobs.run_beat(key, me))
    return me


def _train(job: Job, progress: jobs.Progress) -> dict[str, Any]:
    p = job.params
    name = p["name"]
    me = locked(f"train:{name}", progress)
    try:
        callbacks = JobCallbacks(progress)
        row = TrainedModel.objects.filter(name=name).first()
        if row is None:
            row = model_train(
                name=name,
                config=TrainConfig.from_dict(p["config"]),
                device=p.get("device"),
                callbacks=callbacks,
            )
        else:
            row = model_train(
                name=name,
                resume=True,
                epochs=p.get("epochs") or (p.get("config") or {}).get("epochs"),
                device=p.get("device"),
                callbacks=callbacks,
            )
        return {"model": name, "weights_sha256": row.weights_sha256, "device": row.device}
    finally:
        jobs.run_release(f"train:{name}", me)


def _evaluate(job: Job, progress: jobs.Progress) -> dict[str, Any]:
    p = job.params
    row = TrainedModel.objects.get(name=p["model"])
    metrics = model_evaluate(
        row=row,
        attack_names=list(p["attacks"]),
        limit=p.get("limit"),
        split=p.get("split", "test"),
        device=p.get("device"),
        overrides=p.get("overrides"),
        progress_for=lambda name: lambda done, total: progress(done, total),
    )
    return {"model": row.name, "metrics": metrics}


def _attack(job: Job, progress: jobs.Progress) -> dict[str, Any]:
    p = job.params
    row = TrainedModel.objects.get(name=p["model"])
    summary = model_attack(
        row=row,
        attack_name=p["attack"],
        params=p.get("params", {}),
        limit=p.get("limit"),
        split=p.get("split", "test"),
        device=p.get("device"),
        thresholds=p.get("thresholds"),
        progress=lambda done, total: progress(done, total),
    )
    return {"model": row.name, "summary": summary}


def _reproduce_cell(job: Job, progress: jobs.Progress) -> dict[str, Any]:
    p = job.params
    key = f"cell:{p['table']}:{p['preset']}:{p['arch']}:{p['row']}:{p['run']}"
    me = locked(key, progress)
    try:
        cell = reproduce_cell(
            table_name=p["table"],
            preset_name=p["preset"],
            arch=p["arch"],
            row_label=p["row"],
            run=int(p["run"]),
            epochs=p.get("epochs"),
            device=p.get("device"),
            dataset=p.get("dataset", "mnist"),
            callbacks=lambda name: JobCallbacks(progress),
        )
    finally:
        jobs.run_release(key, me)
    return {"model": cell.model, "values": cell.values}


def run_job_task(task: Task, job_id: int, fn: Any) -> None:
    """Run the job; a duplicate delivery that finds the work busy comes back later."""
    try:
        jobs.job_run(job_id, fn)
    except jobs.Busy as exc:
        raise task.retry(countdown=BUSY_RETRY_S, max_retries=None, exc=exc) from None


@shared_task(bind=True, name="blindspot.train")
def train(self: Task, job_id: int) -> None:
    run_job_task(self, job_id, _train)


@shared_task(bind=True, name="blindspot.evaluate")
def evaluate(self: Task, job_id: int) -> None:
    run_job_task(self, job_id, _evaluate)


@shared_task(bind=True, name="blindspot.attack")
def attack(self: Task, job_id: int) -> None:
    run_job_task(self, job_id, _attack)


@shared_task(bind=True, name="blindspot.reproduce_cell")
def reproduce_cell_task(self: Task, job_id: int) -> None:
    run_job_task(self, job_id, _reproduce_cell)


@shared_task(name="blindspot.noop")
def noop(job_id: int | None = None) -> None:
    """An empty task: the queue's own round trip (the benchmark measures it)."""
    if job_id is not None:
        jobs.job_run(job_id, lambda job, progress: {})
