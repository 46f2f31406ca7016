"""What the console shows of a job: one row of numbers, the same on the page and in its JSON.

A fan-out's parent counts its children (chunks, cells) from the children themselves, so its
bar moves as each one lands, and it reads as running once any child has started (the stored
parent catches up when a child finishes: :func:`robustness.registry.jobs.parent_rollup`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from django.utils import timezone

from robustness.registry.models import Job

JOBS_SHOWN = 100  # the jobs page lists the newest top-level jobs, this many
RETRYABLE = (Job.State.FAILED, Job.State.CANCELLED)


def top_level_jobs() -> QuerySet[Job]:
    """The newest top-level jobs with their children (two queries for the whole page)."""
    children = Job.objects.order_by("id").defer("params", "result", "log")
    return (
        Job.objects.filter(parent__isnull=True)
        .defer("params", "result", "log")
        .prefetch_related(Prefetch("children", queryset=children))
        .order_by("-created", "-id")[:JOBS_SHOWN]
    )


def job_with_children(pk: int) -> Job | None:
    """One job with its children in order (three queries: the children's own, none), or None."""
    children = Job.objects.order_by("id").prefetch_related("children")
    return (
        Job.objects.filter(pk=pk).prefetch_related(Prefetch("children", queryset=children)).first()
    )


def duration_text(seconds: float | None) -> str:
    """``1h 02m``, ``3m 05s`` or ``42s``; an empty string when there is no duration."""
    if seconds is None:
        return ""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _when(value: dt.datetime | None) -> str:
    """A time as the pages show it (the server's time zone, to the second)."""
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S}" if value else ""


def _fraction(job: Job) -> float:
    if job.state == Job.State.DONE:
        return 1.0
    if not job.progress_total:
        return 0.0
    return min(1.0, job.progress_done / job.progress_total)


def job_row(job: Job, *, log: bool = False) -> dict[str, Any]:
    """The numbers of one job (its prefetched children counted when it has any): state,
    ``done`` of ``total`` with ``pct``, where and when it ran, and how it ended."""
    children = list(job.children.all())
    state, started = job.state, job.started
    if children:
        done = sum(c.state == Job.State.DONE for c in children)
        total = len(children)
        pct = 100.0 * sum(_fraction(c) for c in children) / total
        if state == Job.State.QUEUED and any(c.state != Job.State.QUEUED for c in children):
            state = Job.State.RUNNING
        starts = [c.started for c in children if c.started]
        started = started or (min(starts) if starts else None)
        hosts = sorted({c.host for c in children if c.host})
        devices = sorted({c.device for c in children if c.device})
    else:
        done, total = job.progress_done, job.progress_total
        pct = 100.0 * _fraction(job)
        hosts = [job.host] if job.host else []
        devices = [job.device] if job.device else []
    finished = job.finished if state in Job.FINISHED else None
    seconds = ((finished or timezone.now()) - started).total_seconds() if started else None
    row = {
        "id": job.pk,
        "kind": job.kind,
        "label": job.label,
        "state": str(state),
        "done": done,
        "total": total,
        "pct": round(pct, 1),
        "children": len(children),
        "host": ", ".join(hosts),
        "device": ", ".join(devices),
        "attempts": job.attempts,
        "error": job.error,
        "created": _iso(job.created),
        "started": _iso(started),
        "finished": _iso(finished),
        "started_text": _when(started),
        "finished_text": _when(finished),
        "duration": seconds,
        "duration_text": duration_text(seconds),
        "can_cancel": state not in Job.FINISHED,
        "can_retry": state in RETRYABLE or any(c.state in RETRYABLE for c in children),
        "url": reverse("console:job", args=[job.pk]),
    }
    if log:
        row["log"] = job.log
    return row
