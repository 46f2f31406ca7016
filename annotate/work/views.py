"""Worker pages: study entry and consent, the labeling grid, the completion code.

Thin views over :mod:`annotate.work` and the study's recruitment provider, reached only through
the provider interface (:mod:`annotate.providers`), so no page knows any provider by name. The
grid loads its items from the worker API; a signed token in the URL names the lease. Every
worker error becomes a friendly page with its status code, in one place (:func:`worker_view`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from annotate import errors
from annotate.labels import LABELS
from annotate.models import Lease, Study
from annotate.providers import registry
from annotate.providers.base import Visitor
from annotate.work.headers import allow, worker_page
from annotate.work.leases import has_open_assignment, lease_from_token, study_for_key
from annotate.work.payload import example_image
from annotate.work.throttles import lease_throttle_wait
from annotate.work.tokens import lease_token
from robustness.errors import BlindspotError

NONCE = re.compile(r"[A-Za-z0-9_-]{22}")  # what secrets.token_urlsafe(16) makes


def error_page(request: HttpRequest, exc: BlindspotError) -> HttpResponse:
    """A friendly page for a worker error, with the error's status code (never a blank page).

    A message page has nothing to click, so every installed provider's site may frame it: the
    worker sees the message even when the study behind the link is unknown, closed or expired.
    """
    heading = getattr(exc, "heading", errors.WorkError.heading)
    context = {"heading": heading, "message": exc.message, "hint": exc.hint, "code": exc.code}
    response = render(request, "annotate/message.html", context, status=exc.status)
    return allow(response, frame_ancestors=registry.frame_ancestors())


def worker_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A worker page: its headers, and any :class:`~robustness.errors.BlindspotError` (a
    worker's error, or ours: a provider that is not installed) as its page."""

    @worker_page
    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except BlindspotError as exc:
            return error_page(request, exc)

    return wrapped


def _throttled(request: HttpRequest, wait: float) -> HttpResponse:
    """The 429 page: too many starts from this network or for this study; when to retry."""
    seconds = max(1, round(wait))
    error = errors.Throttled()
    error.hint = f"Please wait {seconds} seconds, then press Start again."
    response = error_page(request, error)
    response["Retry-After"] = str(seconds)
    return response


def _framed(response: HttpResponse, study: Study) -> HttpResponse:
    """Let the study's recruiting site frame ``response``."""
    return allow(response, frame_ancestors=registry.provider_for(study).frame_ancestors(study))


def _with_attempt(visitor: Visitor, params: Mapping[str, Any]) -> Visitor:
    """The visitor with an attempt id: the site's, else the nonce the entry page gave this
    browser (``attempt`` in the form), else a new nonce for the page about to be shown."""
    if visitor.attempt_id:
        return visitor
    nonce = params.get("attempt") or ""
    if not (isinstance(nonce, str) and NONCE.fullmatch(nonce)):
        nonce = secrets.token_urlsafe(16)
    return replace(visitor, attempt_id=nonce, fields={**visitor.fields, "attempt": nonce})


def _entry(
    request: HttpRequest, study: Study, visitor: Visitor, *, error: str = "", status: int = 200
) -> HttpResponse:
    """The entry page; ``error`` re-renders it with a message (and a 4xx ``status``)."""
    decline = registry.provider_for(study).decline(study=study, visitor=visitor)
    context = {
        "study": study,
        "visitor": visitor,
        "example": example_image(study),
        "error": error,
        "decline": decline,
    }
    response = render(request, "annotate/entry.html", context, status=status)
    return _framed(response, study)


@worker_view
@require_GET
def study_entry(request: HttpRequest, study_key: str) -> HttpResponse:
    """Instructions and consent; the Start button posts the visitor's ids to ``study_start``."""
    study = study_for_key(study_key)
    provider = registry.provider_for(study)
    visitor = provider.identify(request.GET)
    if not visitor.preview:
        visitor = _with_attempt(visitor, {})  # a fresh nonce for this page, never the URL's
    try:
        if visitor.preview and not has_open_assignment(study):  # say so before anyone accepts
            raise errors.StudyFull()
        if not visitor.preview and (lease := provider.resume(study=study, visitor=visitor)):
            return redirect("annotate:work", token=lease_token(lease))  # a reload
    except BlindspotError as exc:
        return _framed(error_page(request, exc), study)
    return _entry(request, study, visitor)


@worker_view
@csrf_exempt  # framed by third-party sites with cookies blocked: no CSRF cookie can exist
@require_http_methods(["GET", "POST"])
def study_start(request: HttpRequest, study_key: str) -> HttpResponse:
    """Lease an assignment for the consenting visitor and send them to the grid."""
    if request.method == "GET":
        url = reverse("annotate:study-entry", args=[study_key])
        query = request.GET.urlencode()
        return HttpResponseRedirect(f"{url}?{query}" if query else url)
    study = study_for_key(study_key)
    provider = registry.provider_for(study)
    visitor = provider.identify(request.POST)
    if not visitor.preview:
        visitor = _with_attempt(visitor, request.POST)
    if visitor.preview:
        return _entry(request, study, visitor, error="Please accept the task first.", status=400)
    if request.POST.get("consent") != "yes":
        message = "Please tick the box to agree before you start."
        return _entry(request, study, visitor, error=message, status=400)
    if (wait := lease_throttle_wait(request)) is not None:
        return _framed(_throttled(request, wait), study)
    try:
        lease = provider.accept(study=study, visitor=visitor)
    except BlindspotError as exc:
        return _framed(error_page(request, exc), study)
    return redirect("annotate:work", token=lease_token(lease))


@worker_view
@require_GET
def work_page(request: HttpRequest, token: str) -> HttpResponse:
    """The labeling grid; its script loads the items and saves answers through the API."""
    lease = lease_from_token(token)
    if lease.status == Lease.Status.SUBMITTED:
        return redirect("annotate:work-done", token=token)
    context = {
        "study": lease.study,
        "api_url": reverse("annotate:api-work", args=[token]),
        "done_url": reverse("annotate:work-done", args=[token]),
        "labels": "".join(LABELS),
    }
    return _framed(render(request, "annotate/work.html", context), lease.study)


@worker_view
@require_GET
def work_done(request: HttpRequest, token: str) -> HttpResponse:
    """The completion code, large, with a copy button, and the way back to the recruiting site;
    an unsubmitted lease goes to the grid."""
    lease = lease_from_token(token)
    if lease.status != Lease.Status.SUBMITTED:
        return redirect("annotate:work", token=token)
    handback = registry.provider_for(lease.study).handback(lease)
    context = {"lease": lease, "study": lease.study, "handback": handback}
    response = render(request, "annotate/done.html", context)
    return allow(_framed(response, lease.study), form_action=(handback.origin,) if handback else ())
