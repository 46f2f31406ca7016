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
from annotate.leasing import (
    has_open_assignment,
    image_data_uri,
    lease_acquire,
    lease_from_token,
    study_for_key,
)
from annotate.models import Item, Lease, Stimulus, Study
from annotate.mturk import handshake
from annotate.mturk.qualifications import grant_repeat_qualification
from annotate.tokens import lease_token

# MTurk sends this assignmentId while a worker only previews a HIT: show, but do not lease.
MTURK_PREVIEW = handshake.PREVIEW

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


def content_security_policy(
    *, frame_ancestors: tuple[str, ...] = (), form_action: tuple[str, ...] = ()
) -> str:
    """The worker pages' CSP: our own files only, framed by ourselves and the allowed sites
    (plus ``frame_ancestors``), forms posting to ourselves (plus ``form_action``)."""
    ancestors = " ".join(
        dict.fromkeys(["'self'", *settings.BLINDSPOT_FRAME_ANCESTORS, *frame_ancestors])
    )
    actions = " ".join(dict.fromkeys(["'self'", *form_action]))
    return (
        f"frame-ancestors {ancestors}; default-src 'self'; img-src 'self' data:; "
        f"script-src 'self'; style-src 'self'; base-uri 'none'; form-action {actions}"
    )


def worker_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Give a worker view its headers: no caching, no referrer, CSP framing instead of XFO.

    A view widens the CSP for one response through ``response.csp`` (keyword arguments of
    :func:`content_security_policy`), e.g. to be framed by MTurk and post back to it.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        response["Content-Security-Policy"] = content_security_policy(
            **getattr(response, "csp", {})
        )
        return response

    return xframe_options_exempt(wrapped)


def _for_study(response: HttpResponse, study: Study, **csp: tuple[str, ...]) -> HttpResponse:
    """Let the study's recruiting site frame the response (MTurk's worker sites for MTurk)."""
    csp = {**getattr(response, "csp", {}), **csp}
    if study.provider == Study.Provider.MTURK:
        csp["frame_ancestors"] = handshake.FRAME_ANCESTORS
    response.csp = csp
    return response


def error_page(request: HttpRequest, exc: errors.WorkError) -> HttpResponse:
    """A friendly page for a worker error, with the error's status code (never a blank page)."""
    heading, hint = ERROR_PAGES.get(type(exc), ("Something went wrong", ""))
    context = {"heading": heading, "message": exc.message, "hint": hint, "code": exc.code}
    response = render(request, "annotate/message.html", context, status=exc.status)
    # A message page has nothing to click: MTurk's frame may show it even when the study
    # behind the link is unknown, closed or expired (else the worker sees a blank frame).
    response.csp = {"frame_ancestors": handshake.FRAME_ANCESTORS}
    return response


def _panel_params(data: QueryDict) -> dict[str, str]:
    """The recruiting panel's parameters: our ``worker_id``, MTurk's ids or Prolific's
    ``PROLIFIC_PID``, passed through."""
    worker = data.get("worker_id") or data.get("workerId") or data.get("PROLIFIC_PID") or ""
    return {
        "worker_id": worker.strip(),
        "assignment_id": (data.get("assignment_id") or data.get("assignmentId") or "").strip(),
        "hit_id": (data.get("hit_id") or data.get("hitId") or "").strip(),
        "turk_submit_to": (data.get("turk_submit_to") or data.get("turkSubmitTo") or "").strip(),
    }


def _accept(params: dict[str, str]) -> handshake.Accept:
    return handshake.Accept(
        assignment_id=params["assignment_id"],
        hit_id=params["hit_id"],
        worker_id=params["worker_id"],
        turk_submit_to=params["turk_submit_to"],
    )


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
        "example": example_image(study),
        "error": error,
    }
    return _for_study(render(request, "annotate/entry.html", context, status=status), study)


def example_image(study: Study) -> str | None:
    """A clean digit from the study's attention set as a data URI, for the instructions: one no
    assignment shows where the set has spare digits, so the example gives no check away."""
    item = (
        Item.objects.filter(assignment__study=study, is_attention=True)
        .select_related("stimulus")
        .order_by("assignment__index", "position")
        .first()
    )
    if item is None:
        return None
    spare = (
        Stimulus.objects.filter(set_id=item.stimulus.set_id)
        .exclude(items__assignment__study=study)
        .order_by("source_index")
        .first()
    )
    try:
        return image_data_uri((spare or item.stimulus).image)
    except errors.WorkError:
        return None


@worker_page
@require_GET
def study_entry(request: HttpRequest, study_key: str) -> HttpResponse:
    """Instructions and consent; the Start button posts the panel's ids to ``study_start``."""
    try:
        study = study_for_key(study_key)
    except errors.WorkError as exc:
        return error_page(request, exc)
    params = _panel_params(request.GET)
    if study.provider == Study.Provider.MTURK:
        accept = _accept(params)
        if accept.preview and not has_open_assignment(study):  # say so before anyone accepts
            return _for_study(error_page(request, errors.StudyFull()), study)
        if accept.complete and (lease := handshake.bound_lease(study, accept)) is not None:
            return redirect("annotate:work", token=lease_token(lease))  # a reload
    return _entry(request, study, params)


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
        if study.provider == Study.Provider.MTURK:
            lease = handshake.accept_lease(study=study, accept=_accept(params))
        else:
            lease = lease_acquire(
                study=study,
                worker_id=params["worker_id"] or None,
                provider_ref=params["assignment_id"],
            )
    except errors.WorkError as exc:
        return _for_study(error_page(request, exc), study)
    if study.provider == Study.Provider.MTURK and study.provider_options.get(
        "exclude_previous_workers"
    ):
        grant_repeat_qualification(study=study, worker_id=params["worker_id"])
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
    return _for_study(render(request, "annotate/work.html", context), lease.study)


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
    mturk = handshake.external_submit(lease)
    context = {"lease": lease, "study": lease.study, "mturk": mturk}
    response = render(request, "annotate/done.html", context)
    return _for_study(response, lease.study, form_action=(mturk["origin"],) if mturk else ())
