"""The human-study side's Celery tasks: one chunk of a stimulus set, lease expiry, provider sync.

A stimulus chunk is a job whose parameters are the set's request and a span of source indices;
chunks commit as they go (a redelivered chunk resumes) and the chunk that completes the set
makes its controls. Lease expiry and provider sync run on celery beat (``CELERY_BEAT_SCHEDULE``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from celery import Task, shared_task

from annotate.models import Study
from annotate.providers.registry import LOCAL, provider_for
from annotate.stimuli.adversarial import stimulus_set_generate
from annotate.stimuli.controls import control_sets_generate
from annotate.stimuli.requests import StimulusRequest
from annotate.stimuli.storage import is_complete
from annotate.work.leases import leases_expire
from robustness.errors import BlindspotError
from robustness.registry import jobs
from robustness.registry.models import Job
from robustness.registry.tasks import locked, run_job_task

logger = logging.getLogger(__name__)


def _stimulus_chunk(job: Job, progress: jobs.Progress) -> dict[str, Any]:
    p = job.params
    request = StimulusRequest(**{**p["request"], "controls": tuple(p["request"]["controls"])})
    lo, hi = (int(v) for v in p["span"])
    me = locked(f"stimuli:{request.set_name}:{lo}-{hi}", progress)
    try:
        row = stimulus_set_generate(
            request=dataclasses.replace(request, controls=(), replace=False),
            device=p.get("device"),
            progress=lambda name, done, total: progress(done, total),
            span=(lo, hi),
        )
    finally:
        jobs.run_release(f"stimuli:{request.set_name}:{lo}-{hi}", me)
    row.refresh_from_db()
    if request.controls and is_complete(row, row.progress_total):
        key = f"controls:{request.set_name}"
        me = locked(key, progress)
        try:
            control_sets_generate(parent=row, kinds=request.controls, device=p.get("device"))
        finally:
            jobs.run_release(key, me)
    return {"set": row.name, "span": [lo, hi], "device": row.device}


@shared_task(bind=True, name="blindspot.stimulus_chunk")
def stimulus_chunk(self: Task, job_id: int) -> None:
    run_job_task(self, job_id, _stimulus_chunk)


@shared_task(name="blindspot.expire_leases")
def expire_leases() -> int:
    """Return every overdue lease's assignment to the pool (beat, every minute)."""
    return leases_expire()


@shared_task(name="blindspot.sync_providers")
def sync_providers() -> int:
    """Sync every open study that recruits through a paid provider (beat, every 5 minutes);
    a failing one is logged and the others still sync."""
    synced = 0
    for study in Study.objects.filter(status=Study.Status.OPEN).exclude(provider=LOCAL):
        try:
            result = provider_for(study).sync(study=study)
        except BlindspotError as exc:
            logger.warning("sync of %s failed: %s", study.name, exc)
            continue
        if not result.ok:
            logger.warning("sync of %s: %s", study.name, "; ".join(result.lines[-3:]))
        synced += 1
    return synced
