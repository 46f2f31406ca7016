"""The job queue with real ``celery worker`` processes on Redis: a grid fanned out over two
workers, a worker killed with SIGKILL mid-training (redelivered, resumed, bit-identical), a
duplicate delivery that trains once, a poisoned job that fails once, beat expiring a lease."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import time
from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from django.utils import timezone

from annotate.models import Lease
from robustness.registry import jobs
from robustness.registry.models import Job, RunLock, TrainedModel
from robustness.registry.services import model_train
from robustness.training import TrainConfig
from tests.annotate.factories import make_model_row, make_set, make_study, work

# Several worker processes writing at once is a PostgreSQL deployment (docs/deployment.md):
# SQLite serves one host with one worker, so these run on PostgreSQL (CI's second pass).
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def config(epochs: int = 4) -> TrainConfig:
    return TrainConfig(
        arch="mlp1200",
        defense="none",
        epochs=epochs,
        train_limit=2000,
        dataset="synthetic",
        batch_size=50,
        seed=3,
    )


def until(check, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def train_job(name: str, cfg: TrainConfig) -> Job:
    return jobs.job_create(kind="train", params={"name": name, "config": cfg.to_dict()}, label=name)


def test_a_grid_fans_out_over_two_workers_and_is_collected(cluster):
    cluster.worker("w1")
    cluster.worker("w2")
    cluster.wait_ready("w1", "w2")
    out = io.StringIO()
    args = ["table4.1", "--preset", "tiny", "--dataset", "synthetic", "--network", "lenet5"]
    args += ["--defense", "none,AT", "--runs", "2", "--no-progress"]
    call_command("reproduce", *args, "--queue", "--wait", stdout=out)
    parent = Job.objects.get(parent__isnull=True)
    cells = list(parent.children.all())
    assert parent.state == Job.State.DONE and len(cells) == 4
    assert {c.state for c in cells} == {Job.State.DONE}
    assert len({c.host for c in cells}) == 2, "both workers took cells"
    assert TrainedModel.objects.count() == 4
    assert all(lock.runs == 1 for lock in RunLock.objects.filter(key__startswith="cell:"))
    # collected: the table printed from the registry, nothing trained again in this process
    assert "lenet5" in out.getvalue() and "none" in out.getvalue()
    assert TrainedModel.objects.filter(status="done").count() == 4


def test_sigkill_mid_training_redelivers_and_resumes_bit_identically(cluster, settings):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers run (OMP_NUM_THREADS=1): the same arithmetic
    try:
        reference = model_train(name="reference", config=config(), device="cpu")
    finally:
        torch.set_num_threads(threads)
    cluster.worker("w1")
    cluster.worker("w2")
    cluster.wait_ready("w1", "w2")
    job = jobs.jobs_send([train_job("victim", config())])[0]

    def after_first_epoch() -> Job | None:
        job.refresh_from_db()
        return job if "epoch 1:" in job.log and job.state == Job.State.RUNNING else None

    until(after_first_epoch, 180, "the first epoch's checkpoint")
    victim = cluster.name_of(int(job.host.rsplit(":", 1)[1]))
    cluster.kill(victim)
    # As if the survivor were another host: no local run folder, only the shared checkpoint.
    shutil.rmtree(Path(settings.BLINDSPOT_RUNS_DIR) / "victim", ignore_errors=True)
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING  # it died with the worker, nobody said so
    until(lambda: Job.objects.get(pk=job.pk).state == Job.State.DONE, 240, "redelivery")
    job.refresh_from_db()
    row = TrainedModel.objects.get(name="victim")
    assert row.weights_sha256 == reference.weights_sha256
    assert row.epochs_done == 4 and len(row.history) == 4
    assert job.attempts == 2 and RunLock.objects.get(key="train:victim").runs == 2
    assert "epochs 2..4" in job.log, "the survivor resumed from the first epoch's checkpoint"


def test_a_duplicate_delivery_trains_once(cluster):
    cluster.worker("w1")
    cluster.worker("w2")
    cluster.wait_ready("w1", "w2")
    job = train_job("twice", config(epochs=2))
    jobs.jobs_send([job])
    jobs.job_send(job)  # the same job delivered again
    until(lambda: Job.objects.get(pk=job.pk).state == Job.State.DONE, 240, "training")
    time.sleep(8)  # the duplicate comes back after its retry delay and finds the work done
    assert RunLock.objects.get(key="train:twice").runs == 1
    row = TrainedModel.objects.get(name="twice")
    assert len(row.history) == 2 and row.status == TrainedModel.Status.DONE


def test_a_poisoned_job_fails_once_with_its_message(cluster):
    cluster.worker("w1")
    cluster.wait_ready("w1")
    job = jobs.job_create(kind="train", params={"name": "bad", "config": {"arch": "nope"}})
    jobs.jobs_send([job])
    until(lambda: Job.objects.get(pk=job.pk).state == Job.State.FAILED, 120, "the failure")
    time.sleep(3)
    job.refresh_from_db()
    assert job.attempts == 1 and job.state == Job.State.FAILED
    assert "nope" in job.error and "\n" not in job.error


def test_beat_expires_an_overdue_lease(cluster):
    study = make_study([make_set(5, model=make_model_row())], n_assignments=1, size=5)
    lease = work(study, "W1", submit=False)
    Lease.objects.filter(pk=lease.pk).update(expires=timezone.now() - dt.timedelta(minutes=1))
    cluster.env["BLINDSPOT_EXPIRE_LEASES_EVERY"] = "1"
    cluster.worker("w1", queues="cpu")
    cluster.beat()
    cluster.wait_ready("w1")
    until(lambda: Lease.objects.get(pk=lease.pk).status == Lease.Status.EXPIRED, 120, "the expiry")
