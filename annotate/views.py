"""Worker pages: study entry and consent, the labeling grid, the completion code.

Thin views over ``annotate.leasing``. Every page may run inside a recruiting site's iframe with
cookies blocked, so none sets a cookie or needs one: a signed token in the URL names the lease,
and the grid loads its items from the worker API. Headers forbid caching, referrers and inline
code, and allow framing only by the sites in ``settings.BLINDSPOT_FRAME_ANCESTORS``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from annotate import errors
from annotate.leasing import lease_acquire, lease_from_token, study_for_key
from annotate.models import Lease, Study
from annotate.tokens import lease_token

# MTurk sends this assignmentId while a worker only previews a HIT: show, but do not lease.
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"

# Headings and hints of the error pages; the message itself comes from the exception.
ERROR_PAGES: dict[type[errors.WorkError], tuple[str, str]] = {
    errors.StudyNotFound: ("Study not found", "Please check the link you were given."),
    errors.StudyClosed: ("This study is closed", "Thank you for your interest."),
    errors.StudyFull: (
        "This study is full",
        "If you came from a recruiting site, please return the task there.",
    ),
    errors.AlreadyParticipated: (
        "You have already taken part",
        "Thank you! If you came from a recruiting site, please return this task there.",
    ),
    errors.InvalidToken: ("This link is not valid", "Please use the link you were given."),
    errors.InvalidSubmission: ("This link cannot be used", "Please check the link you were given."),
    errors.LeaseExpired: (
        "Your time ran out",
        "To start again, open the study link you were given once more.",
    ),
}


def content_security_policy() -> str:
    """The worker pages' CSP: our own files only, framed by ourselves and the allowed sites."""
    ancestors = " ".join(["'self'", *settings.BLINDSPOT_FRAME_ANCESTORS])
    return (
        f"frame-ancestors {ancestors}; default-src 'self'; img-src 'self' data:; "
        "script-src 'self'; style-src 'self'; base-uri 'none'; form-action 'self'"
    )


def worker_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Give a worker view its headers: no caching, no referrer, CSP framing instead of XFO."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        response["Content-Security-Policy"] = content_security_policy()
        return response

    return xframe_options_exempt(wrapped)


def error_page(request: HttpRequest, exc: errors.WorkError) -> HttpResponse:
    """A friendly page for a worker error, with the error's status code (never a blank page)."""
    heading, hint = ERROR_PAGES.get(type(exc), ("Something went wrong", ""))
    context = {"heading": heading, "message": exc.message, "hint": hint, "code": exc.code}
    return render(request, "annotate/message.html", context, status=exc.status)


def _panel_params(data: QueryDict) -> dict[str, str]:
    """The recruiting panel's parameters: our ``worker_id`` or MTurk's ids, passed through."""
    return {
        "worker_id": (data.get("worker_id") or data.get("workerId") or "").strip(),
        "assignment_id": (data.get("assignment_id") or data.get("assignmentId") or "").strip(),
        "hit_id": (data.get("hit_id") or data.get("hitId") or "").strip(),
    }


def _entry(
    request: HttpRequest,
    study: Study,
    params: dict[str, str],
    *,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    """The entry page; ``error`` re-renders it with a message (and a 4xx ``status``)."""
    context = {
        "study": study,
        "params": params,
        "preview": params["assignment_id"] == MTURK_PREVIEW,
        "error": error,
    }
    return render(request, "annotate/entry.html", context, status=status)


@worker_page
@require_GET
def study_entry(request: HttpRequest, study_key: str) -> HttpResponse:
    """Instructions and consent; the Start button posts the panel's ids to ``study_start``."""
    try:
        study = study_for_key(study_key)
    except errors.WorkError as exc:
        return error_page(request, exc)
    return _entry(request, study, _panel_params(request.GET))


@worker_page
@csrf_exempt  # framed by third-party sites with cookies blocked: no CSRF cookie can exist
@require_http_methods(["GET", "POST"])
def study_start(request: HttpRequest, study_key: str) -> HttpResponse:
    """Lease an assignment for the consenting worker and send them to the grid."""
    if request.method == "GET":
        url = reverse("annotate:study-entry", args=[study_key])
        query = request.GET.urlencode()
        return HttpResponseRedirect(f"{url}?{query}" if query else url)
    try:
        study = study_for_key(study_key)
    except errors.WorkError as exc:
        return error_page(request, exc)
    params = _panel_params(request.POST)
    if params["assignment_id"] == MTURK_PREVIEW:
        return _entry(request, study, params, error="Please accept the task first.", status=400)
    if request.POST.get("consent") != "yes":
        message = "Please tick the box to agree before you start."
        return _entry(request, study, params, error=message, status=400)
    try:
        lease = lease_acquire(
            study=study,
            worker_id=params["worker_id"] or None,
            provider_ref=params["assignment_id"],
        )
    except errors.WorkError as exc:
        return error_page(request, exc)
    return redirect("annotate:work", token=lease_token(lease))


@worker_page
@require_GET
def work_page(request: HttpRequest, token: str) -> HttpResponse:
    """The labeling grid; its script loads the items and saves answers through the API."""
    try:
        lease = lease_from_token(token)
    except errors.WorkError as exc:
        return error_page(request, exc)
    if lease.status == Lease.Status.SUBMITTED:
        return redirect("annotate:work-done", token=token)
    context = {
        "study": lease.study,
        "api_url": reverse("annotate:api-work", args=[token]),
        "done_url": reverse("annotate:work-done", args=[token]),
    }
    return render(request, "annotate/work.html", context)


@worker_page
@require_GET
def work_done(request: HttpRequest, token: str) -> HttpResponse:
    """The completion code, large, with a copy button; an unsubmitted lease goes to the grid."""
    try:
        lease = lease_from_token(token)
    except errors.WorkError as exc:
        return error_page(request, exc)
    if lease.status != Lease.Status.SUBMITTED:
        return redirect("annotate:work", token=token)
    return render(request, "annotate/done.html", {"lease": lease, "study": lease.study})
