"""The console's MTurk page for a study: mode, HITs, assignments, disagreements, spend, audit.

Staff only. The page reads our database (no MTurk call, so it loads when MTurk is down); the
actions (sync, approve, bonus, expire) are POSTs with CSRF, and the two that spend money need
an explicit confirmation checkbox. Results come back as messages on the page.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotate.models import Study
from annotate.mturk import fees, hits, payments
from annotate.mturk.client import CLOSURE_NOTICE, MTurkError, is_sandbox, mode_label, preview_url
from annotate.mturk.models import HitAssignment, MTurkCall
from annotate.mturk.publish import PublishError, study_capacity
from annotate.mturk.reconcile import study_problems, study_sync

AUDIT_ROWS = 50
MAX_MESSAGES = 12
SPENDING = {"approve", "bonus"}
KNOWN_ERRORS = (MTurkError, PublishError, payments.PaymentError, hits.HitError)


@staff_member_required
def study_mturk(request: HttpRequest, name: str) -> HttpResponse:
    """The study's MTurk state as last synced, and the action forms."""
    study = get_object_or_404(Study, name=name)
    sandbox = is_sandbox()
    rows = HitAssignment.objects.filter(hit__study=study, hit__sandbox=sandbox)
    per_hit: dict[int, dict[str, int]] = {}
    for row in rows.values("hit", "mturk_status").annotate(n=Count("id")):
        per_hit.setdefault(row["hit"], {})[row["mturk_status"]] = row["n"]
    hit_rows = [
        {
            "hit": h,
            "states": per_hit.get(h.pk, {}),
            "preview": preview_url(h.hit_group_id, sandbox=sandbox) if h.hit_group_id else "",
        }
        for h in hits.study_hits(study=study, sandbox=sandbox)
    ]
    by_state = {s: 0 for s in HitAssignment.MTurkStatus.values}
    for states in per_hit.values():
        for state, n in states.items():
            by_state[state] = by_state.get(state, 0) + n
    spend = payments.study_spend(study=study, sandbox=sandbox)
    context = {
        "study": study,
        "sandbox": sandbox,
        "mode": mode_label(sandbox),
        "note": hits.other_mode_note(study=study, sandbox=sandbox),
        "hit_rows": hit_rows,
        "by_state": by_state,
        "capacity": study_capacity(study=study, sandbox=sandbox),
        "problems": study_problems(study=study, sandbox=sandbox),
        "spend": {k: fees.money(v) if not isinstance(v, int) else v for k, v in spend.items()},
        "calls": MTurkCall.objects.filter(study=study).order_by("-at", "-id")[:AUDIT_ROWS],
        "options": study.provider_options or {},
        "closure": CLOSURE_NOTICE,
    }
    return render(request, "mturk/console.html", context)


def _say(request: HttpRequest, lines: list[str], *, ok: bool) -> None:
    level = messages.SUCCESS if ok else messages.ERROR
    for line in lines[:MAX_MESSAGES]:
        messages.add_message(request, level, line)
    if len(lines) > MAX_MESSAGES:
        messages.add_message(
            request, level, f"… and {len(lines) - MAX_MESSAGES} more lines (mturk status)"
        )


def _skipped(batch: payments.Batch) -> list[str]:
    return [f"skipped {s}" for s in batch.skipped]


def _sync(request: HttpRequest, study: Study) -> None:
    report = study_sync(study=study)
    _say(request, report.lines(), ok=not report.errors)


def _approve(request: HttpRequest, study: Study) -> None:
    batch = payments.approve_plan(study=study, passing_only=request.POST.get("passing_only") == "1")
    if not batch.rows:
        _say(request, ["nothing to approve", *_skipped(batch)], ok=True)
        return
    outcome = payments.approve(batch=batch, feedback=request.POST.get("feedback", "").strip())
    _say(request, [*outcome.lines(), *_skipped(batch)], ok=outcome.ok)


def _bonus(request: HttpRequest, study: Study) -> None:
    try:
        amount = fees.parse_money(request.POST.get("amount", ""))
    except ValueError as exc:
        raise payments.PaymentError(f"bonus amount: {exc}") from None
    reason = request.POST.get("reason", "").strip()
    if not reason:
        raise payments.PaymentError("a reason is required: MTurk shows it to the worker")
    workers = request.POST.get("workers", "").replace(",", " ").split()
    batch = payments.bonus_plan(
        study=study,
        amount=amount,
        workers=workers,
        all_approved=not workers and request.POST.get("all_approved") == "1",
    )
    if not batch.rows:
        _say(request, ["nothing to bonus", *_skipped(batch)], ok=True)
        return
    outcome = payments.bonus(batch=batch, amount=amount, reason=reason)
    _say(request, [*outcome.lines(), *_skipped(batch)], ok=outcome.ok)


def _expire(request: HttpRequest, study: Study) -> None:
    outcome = hits.hits_expire(study=study)
    _say(request, outcome.lines(), ok=outcome.ok)


ACTIONS: dict[str, Callable[[HttpRequest, Study], None]] = {
    "sync": _sync,
    "approve": _approve,
    "bonus": _bonus,
    "expire": _expire,
}


@require_POST
@staff_member_required
def study_mturk_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    """Run one action (POST with CSRF); money needs the confirmation box ticked."""
    study = get_object_or_404(Study, name=name)
    run = ACTIONS.get(action)
    if run is None:
        raise Http404("unknown MTurk action")
    back = HttpResponseRedirect(reverse("mturk:study", args=[study.name]))
    if action in SPENDING and request.POST.get("confirm") != "yes":
        messages.error(
            request,
            f"Nothing done: tick the box to confirm that {action} spends money "
            f"({mode_label()} mode).",
        )
        return back
    try:
        run(request, study)
    except KNOWN_ERRORS as exc:
        messages.error(request, str(exc))
    return back
