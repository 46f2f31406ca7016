"""Jobs: units of work sent to the Celery queue, recorded as :class:`Job` rows.

A job is created (its parameters are names and ids), then sent as a task carrying only its
id. The worker that runs it records where it runs, its progress and how it ended; a fan-out
is a parent job whose children are its cells. Tasks are acknowledged when they finish, so a
job whose worker died is delivered again and its function resumes (training from its last
checkpoint, stimuli from their committed chunks). A bad parameter fails the job once, with its
message; it is never retried.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from robustness.errors import BlindspotError
from robustness.registry.models import Job, RunLock

LOG_CHARS = 4000
HEARTBEAT_S = 5.0


class QueueUnavailable(BlindspotError):
    """The job queue's broker cannot be reached (one line: which, and what to check)."""

    code, status = "queue_unavailable", 503


class JobCancelled(Exception):
    """Raised inside a running job when it was cancelled (stops it between steps)."""


class Busy(Exception):
    """Another live process runs the same work (a duplicate delivery): try again later."""


def stale_after() -> float:
    return float(getattr(settings, "BLINDSPOT_RUN_STALE_SECONDS", 120))


def run_claim(key: str, runner: str) -> bool:
    """Take the run lock ``key`` for ``runner`` unless a live runner holds it (its heartbeat
    is fresher than ``BLINDSPOT_RUN_STALE_SECONDS``); a dead runner's lock is taken over."""
    try:
        RunLock.objects.get_or_create(key=key)
    except IntegrityError:  # created by the other delivery a moment ago
        pass
    now = timezone.now()
    if RunLock.objects.filter(key=key, runner=runner).update(heartbeat=now):
        return True
    stale = now - dt.timedelta(seconds=stale_after())
    free = Q(runner="") | Q(heartbeat__isnull=True) | Q(heartbeat__lt=stale)
    taken = RunLock.objects.filter(free, key=key).update(
        runner=runner, heartbeat=now, runs=F("runs") + 1
    )
    return bool(taken)


def run_beat(key: str, runner: str) -> None:
    RunLock.objects.filter(key=key, runner=runner).update(heartbeat=timezone.now())


def run_release(key: str, runner: str) -> None:
    RunLock.objects.filter(key=key, runner=runner).update(runner="", heartbeat=None)


def whoami() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def broker_check() -> None:
    """Refuse, in one line, when the broker does not answer."""
    from config.celery import app

    url = app.conf.broker_url or ""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2)
    except Exception as exc:  # kombu raises the transport's own errors
        shown = url.split("@")[-1]
        raise QueueUnavailable(
            f"the job queue at {shown} is unreachable ({type(exc).__name__}): start the broker "
            "(Redis: redis-server) or point CELERY_BROKER_URL at it (docs/deployment.md)"
        ) from None


def job_create(
    *, kind: str, params: dict[str, Any], label: str = "", parent: Job | None = None
) -> Job:
    return Job.objects.create(kind=kind, params=params, label=label[:200], parent=parent)


def job_send(job: Job) -> Job:
    """Send the job's task (its queue follows the task routes)."""
    from config.celery import app

    name = f"blindspot.{job.kind}"
    route = settings.CELERY_TASK_ROUTES.get(name, {})
    queue = route.get("queue", settings.CELERY_TASK_DEFAULT_QUEUE)
    result = app.send_task(name, args=[job.pk], queue=queue)
    Job.objects.filter(pk=job.pk).update(task_id=result.id, queue=queue)
    job.task_id, job.queue = result.id, queue
    return job


def jobs_send(jobs: Iterable[Job]) -> list[Job]:
    """Send many jobs (a fan-out) after checking the broker once."""
    broker_check()
    return [job_send(job) for job in jobs]


class Progress:
    """Progress, heartbeat and log of a running job, written at most every few seconds."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.last = 0.0
        self.lines: list[str] = []
        self.beats: list[Callable[[], None]] = []  # e.g. a run lock's heartbeat

    def __call__(self, done: int, total: int, line: str = "", *, force: bool = False) -> None:
        if line:
            self.lines.append(line)
        now = time.monotonic()
        if not force and now - self.last < HEARTBEAT_S:
            return
        self.last = now
        log = ("\n".join(self.lines))[-LOG_CHARS:]
        state = Job.objects.filter(pk=self.job.pk).values_list("state", flat=True).first()
        Job.objects.filter(pk=self.job.pk).update(
            progress_done=done, progress_total=total, heartbeat=timezone.now(), log=log
        )
        for beat in self.beats:
            beat()
        if state == Job.State.CANCELLED:
            raise JobCancelled()


def job_run(job_id: int, fn: Callable[[Job, Progress], dict[str, Any] | None]) -> None:
    """Run ``fn`` for the job (the body of every task): state, host, timings, the outcome."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state in (Job.State.DONE, Job.State.CANCELLED):
        return  # a redelivery of finished work, or a cancelled job: nothing to do
    from robustness import runtime

    Job.objects.filter(pk=job.pk).update(
        state=Job.State.RUNNING,
        host=whoami(),
        started=job.started or timezone.now(),
        attempts=job.attempts + 1,
        heartbeat=timezone.now(),
        error="",
    )
    job.refresh_from_db()
    progress = Progress(job)
    try:
        result = fn(job, progress) or {}
    except JobCancelled:
        _finish(job, Job.State.CANCELLED, error="cancelled")
        return
    except Busy:  # a duplicate delivery: the task asks the queue to try again later
        Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING)
        raise
    except Exception as exc:  # a poisoned job fails once, with its message
        text = exc.message if isinstance(exc, BlindspotError) else f"{type(exc).__name__}: {exc}"
        _finish(job, Job.State.FAILED, error=text, log="\n".join(progress.lines))
        return
    device = str(result.pop("device", "")) or job.device
    if not device:
        device = runtime.describe_device(runtime.resolve_device(None))
    job.device = device
    _finish(job, Job.State.DONE, result=result, log="\n".join(progress.lines))


def _finish(
    job: Job, state: str, *, error: str = "", result: dict | None = None, log: str = ""
) -> None:
    fields: dict[str, Any] = {"state": state, "finished": timezone.now(), "error": error}
    if result is not None:
        fields["result"] = result
    if job.device:
        fields["device"] = job.device
    if log:
        fields["log"] = log[-LOG_CHARS:]
    if state == Job.State.DONE:  # whatever unit the job counted in, all of it is done
        fields["progress_total"] = Greatest(F("progress_total"), 1)
        fields["progress_done"] = Greatest(F("progress_total"), 1)
    Job.objects.filter(pk=job.pk).exclude(state=Job.State.CANCELLED).update(**fields)
    if job.parent_id:
        parent_rollup(job.parent_id)


def parent_rollup(parent_id: int) -> Job:
    """A parent's state and progress from its children: done when all are, failed if any did."""
    with transaction.atomic():
        parent = Job.objects.select_for_update().get(pk=parent_id)
        children = parent.children.all()
        total = children.count()
        done = children.filter(state=Job.State.DONE).count()
        failed = children.filter(state=Job.State.FAILED).count()
        finished = children.filter(state__in=Job.FINISHED).count()
        parent.progress_done, parent.progress_total = done, total
        if parent.state != Job.State.CANCELLED:
            if finished == total:
                parent.state = Job.State.FAILED if failed else Job.State.DONE
                parent.finished = parent.finished or timezone.now()
                parent.error = f"{failed} of {total} failed" if failed else ""
            elif done or failed or children.filter(state=Job.State.RUNNING).exists():
                parent.state = Job.State.RUNNING
                parent.started = parent.started or timezone.now()
        parent.save()
    return parent


def job_cancel(job: Job) -> int:
    """Cancel a job and its unfinished children (running ones stop at their next step)."""
    ids = [job.pk, *job.children.values_list("pk", flat=True)]
    return (
        Job.objects.filter(pk__in=ids)
        .exclude(state__in=Job.FINISHED)
        .update(state=Job.State.CANCELLED, finished=timezone.now())
    )


def job_retry(job: Job) -> Job:
    """Send a failed or cancelled job (or a parent's failed children) again."""
    targets = list(job.children.filter(state__in=[Job.State.FAILED, Job.State.CANCELLED]))
    if not job.children.exists():
        if job.state not in (Job.State.FAILED, Job.State.CANCELLED):
            raise BlindspotError(f"job {job.pk} is {job.state}: only failed or cancelled jobs")
        targets = [job]
    broker_check()  # first: a retry that cannot be sent leaves the rows as they were
    Job.objects.filter(pk__in=[t.pk for t in targets] + [job.pk]).update(
        state=Job.State.QUEUED, error="", finished=None
    )
    jobs_send(Job.objects.filter(pk__in=[t.pk for t in targets]))
    job.refresh_from_db()
    return job


def job_wait(
    job: Job,
    *,
    poll: float = 1.0,
    timeout: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Job:
    """Block until the job (a parent: all its children) has finished; its final row."""
    started = time.monotonic()
    while True:
        job.refresh_from_db()
        if job.children.exists():
            job = parent_rollup(job.pk)
        if on_progress:
            on_progress(job.progress_done, job.progress_total)
        if job.state in Job.FINISHED:
            return job
        if timeout is not None and time.monotonic() - started > timeout:
            raise BlindspotError(f"job {job.pk} still {job.state} after {timeout:.0f} s")
        time.sleep(poll)


def active_jobs() -> Any:
    return Job.objects.filter(Q(state=Job.State.QUEUED) | Q(state=Job.State.RUNNING))
