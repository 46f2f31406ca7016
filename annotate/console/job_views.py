"""The console's jobs pages: the queue's top-level jobs, one job with its children, cancel, retry.

Thin: rows come from :mod:`annotate.console.job_rows` (the pages and their JSON agree), actions
from :mod:`robustness.registry.jobs`. The pages poll their JSON every two seconds
(``console/live.js``); a refused action comes back as a message on the job's page.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotate.console.job_rows import job_row, job_with_children, top_level_jobs
from robustness.errors import BlindspotError
from robustness.registry import jobs
from robustness.registry.models import Job

POLL_MS = 2000


def _json(body: dict) -> JsonResponse:
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


def _job_or_404(pk: int) -> Job:
    job = job_with_children(pk)
    if job is None:
        raise Http404("no such job")
    return job


@staff_member_required
def jobs_list(request: HttpRequest) -> HttpResponse:
    """The newest top-level jobs with their live state and progress."""
    rows = [job_row(job) for job in top_level_jobs()]
    return render(request, "console/jobs.html", {"rows": rows, "poll_ms": POLL_MS})


@staff_member_required
def jobs_json(request: HttpRequest) -> JsonResponse:
    """The jobs page's rows as JSON, by id: ``{"jobs": {"<id>": row}}``."""
    return _json({"jobs": {str(job.pk): job_row(job) for job in top_level_jobs()}})


@staff_member_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One job with each child's progress, host, attempts, error and log tail."""
    job = _job_or_404(pk)
    context = {
        "job": job,
        "row": job_row(job, log=True),
        "children": [job_row(child, log=True) for child in job.children.all()],
        "params": json.dumps({"params": job.params, "result": job.result}, indent=2),
        "poll_ms": POLL_MS,
    }
    return render(request, "console/job.html", context)


@staff_member_required
def job_json(request: HttpRequest, pk: int) -> JsonResponse:
    """One job's row and its children's, as JSON: ``{"job": row, "children": {"<id>": row}}``."""
    job = _job_or_404(pk)
    children = {str(c.pk): job_row(c, log=True) for c in job.children.all()}
    return _json({"job": job_row(job, log=True), "children": children})


def _back(job: Job) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("console:job", args=[job.parent_id or job.pk]))


@require_POST
@staff_member_required
def job_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel a job and its unfinished children (running ones stop at their next step)."""
    job = get_object_or_404(Job, pk=pk)
    if job.state in Job.FINISHED:
        messages.error(request, f"job {job.pk} is {job.state}: nothing to cancel")
    else:
        count = jobs.job_cancel(job)
        messages.success(request, f"job {job.pk}: {count} unfinished job(s) cancelled")
    return _back(job)


@require_POST
@staff_member_required
def job_retry_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a failed or cancelled job (a parent: its failed and cancelled children) again."""
    job = get_object_or_404(Job, pk=pk)
    try:
        jobs.broker_check()  # before job_retry marks anything queued
        jobs.job_retry(job)
    except BlindspotError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"job {job.pk} sent again")
    return _back(job)
