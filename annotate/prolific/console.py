"""The console's Prolific page for a study: its Prolific studies, submissions, disagreements,
bonuses, spend, the audit, and the actions.

Staff only. The page reads our database (no Prolific call, so it loads when Prolific is down);
the actions are POSTs with CSRF, and those that spend money need the confirmation box ticked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotate.models import Study
from annotate.prolific import fees, payments, remote
from annotate.prolific.client import ProlificError, is_local_endpoint, mode_label
from annotate.prolific.models import ProlificCall, ProlificStudy, ProlificSubmission
from annotate.prolific.publish import PublishError, open_assignments
from annotate.prolific.reconcile import study_problems, study_sync

AUDIT_ROWS = 50
MAX_MESSAGES = 12
SPENDING = {"approve", "bonus", "add-places"}
KNOWN_ERRORS = (ProlificError, PublishError, payments.PaymentError, remote.RemoteError)


@staff_member_required
def study_prolific(request: HttpRequest, name: str) -> HttpResponse:
    """The study's Prolific state as last synced, and the action forms."""
    study = get_object_or_404(Study, name=name)
    rows = ProlificSubmission.objects.filter(prolific_study__study=study).select_related("lease")
    spend = payments.study_spend(study=study)
    currency = spend["currency"]
    context = {
        "study": study,
        "mode": mode_label(),
        "local": is_local_endpoint(),
        "remotes": ProlificStudy.objects.filter(study=study).order_by("created"),
        "submissions": rows.order_by("-created")[:500],
        "by_state": sorted(Counter(rows.values_list("status", flat=True)).items()),
        "open_assignments": open_assignments(study),
        "problems": study_problems(study=study),
        "bonuses": payments.unfinished(study),
        "spend": spend,
        "spend_line": payments.spend_line(spend),
        "currency": currency,
        "calls": ProlificCall.objects.filter(study=study).order_by("-at", "-id")[:AUDIT_ROWS],
    }
    return render(request, "prolific/console.html", context)


def _say(request: HttpRequest, lines: list[str], *, ok: bool) -> None:
    level = messages.SUCCESS if ok else messages.ERROR
    for line in lines[:MAX_MESSAGES]:
        messages.add_message(request, level, line)
    if len(lines) > MAX_MESSAGES:
        messages.add_message(request, level, f"… and {len(lines) - MAX_MESSAGES} more lines")


def _sync(request: HttpRequest, study: Study) -> None:
    report = study_sync(study=study)
    _say(request, report.lines(), ok=not report.errors)


def _approve(request: HttpRequest, study: Study) -> None:
    batch = payments.approve_plan(study=study, passing_only=request.POST.get("passing_only") == "1")
    if not batch.rows:
        _say(request, ["nothing to approve", *[f"skipped {s}" for s in batch.skipped]], ok=True)
        return
    outcome = payments.approve(batch=batch)
    _say(request, [*outcome.lines(), *[f"skipped {s}" for s in batch.skipped]], ok=outcome.ok)


def _bonus(request: HttpRequest, study: Study) -> None:
    try:
        amount = fees.parse_money(request.POST.get("amount", ""))
    except ValueError as exc:
        raise payments.PaymentError(f"bonus amount: {exc}") from None
    participants = request.POST.get("participants", "").replace(",", " ").split()
    resumed = payments.settle_all(study=study)
    batch = payments.bonus_plan(
        study=study, amount=amount, participants=participants, all_approved=not participants
    )
    outcome = payments.bonus(batch=batch, amount=amount, reason=request.POST.get("reason", ""))
    _say(request, [*resumed.notes, *outcome.lines()], ok=outcome.ok and resumed.ok)


def _transition(action: str) -> Callable[[HttpRequest, Study], None]:
    def run(request: HttpRequest, study: Study) -> None:
        result = remote.transition(study=study, action=action)
        _say(request, result.lines, ok=result.ok)

    return run


def _add_places(request: HttpRequest, study: Study) -> None:
    result = remote.add_places(study=study)
    _say(request, result.lines, ok=result.ok)


ACTIONS: dict[str, Callable[[HttpRequest, Study], None]] = {
    "sync": _sync,
    "approve": _approve,
    "bonus": _bonus,
    "pause": _transition("pause"),
    "start": _transition("start"),
    "stop": _transition("stop"),
    "add-places": _add_places,
}


@require_POST
@staff_member_required
def study_prolific_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    """Run one action (POST with CSRF); money needs the confirmation box ticked."""
    study = get_object_or_404(Study, name=name)
    run = ACTIONS.get(action)
    if run is None:
        raise Http404("unknown Prolific action")
    back = HttpResponseRedirect(reverse("prolific:study", args=[study.name]))
    if action in SPENDING and request.POST.get("confirm") != "yes":
        messages.error(
            request, f"Nothing done: tick the box to confirm that {action} spends money."
        )
        return back
    try:
        run(request, study)
    except KNOWN_ERRORS as exc:
        messages.error(request, str(exc))
    return back
