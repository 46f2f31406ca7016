"""A study's HITs after publishing: expire them, extend them, and the status at a glance."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.client import BaseClient
from django.db.models import Count, QuerySet
from django.utils import timezone

from annotate.models import Study
from annotate.mturk import fees
from annotate.mturk.client import MTurkError, call, get_client, is_sandbox, mode_label
from annotate.mturk.models import Hit, HitAssignment
from annotate.mturk.payments import Outcome, spend_line, study_spend
from annotate.mturk.publish import study_capacity
from annotate.mturk.reconcile import study_problems
from annotate.mturk.tokens import token_already_used
from robustness.errors import BlindspotError

# UpdateExpirationForHIT: "If you update it to a time in the past, the HIT will be immediately
# expired" (service model); a fixed past instant, as oTree does.
EXPIRE_AT = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
MAX_INCREASE = "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease"


class HitError(BlindspotError):
    """A HIT operation refused before anything was sent to MTurk."""


def study_hits(
    *, study: Study, sandbox: bool | None = None, hit_ids: list[str] | None = None
) -> QuerySet[Hit]:
    """The study's published HITs in this mode (optionally only the named ones), in publishing
    order; intents still pending have no HIT id to act on and are left out."""
    sandbox = is_sandbox() if sandbox is None else sandbox
    hits = Hit.objects.filter(study=study, sandbox=sandbox).published().order_by("index")
    if hit_ids:
        hits = hits.filter(hit_id__in=hit_ids)
        missing = set(hit_ids) - set(hits.values_list("hit_id", flat=True))
        if missing:
            raise HitError(f"not HITs of study {study.name}: {', '.join(sorted(missing))}")
    return hits


def other_mode_note(*, study: Study, sandbox: bool) -> str:
    """A hint when the study's HITs are all in the other mode (MTURK_SANDBOX set wrong?)."""
    other = Hit.objects.filter(study=study, sandbox=not sandbox).count()
    if other and not Hit.objects.filter(study=study, sandbox=sandbox).exists():
        return (
            f"no {mode_label(sandbox)} HITs, but {other} {mode_label(not sandbox)} HITs: "
            f"set MTURK_SANDBOX={'1' if not sandbox else '0'} to work on those"
        )
    return ""


def hits_expire(*, study: Study, client: BaseClient | None = None) -> Outcome:
    """Expire every HIT of the study in this mode now; workers already on one may finish."""
    client = client or get_client()
    outcome = Outcome(action="expire")
    for hit in study_hits(study=study).exclude(status="Disposed"):
        try:
            call(
                client,
                "update_expiration_for_hit",
                study=study,
                HITId=hit.hit_id,
                ExpireAt=EXPIRE_AT,
            )
        except MTurkError as exc:
            outcome.failed.append(f"{hit.hit_id}: {exc}")
            continue
        hit.expiration = timezone.now()
        hit.save(update_fields=["expiration"])
        outcome.done.append(str(hit))
    return outcome


@dataclass
class ExtendPlan:
    """More assignments per HIT and/or a later expiry, priced."""

    study: Study
    sandbox: bool
    hits: list[Hit]
    assignments: int
    expire_at: dt.datetime | None
    cost: fees.Cost
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Mode: {mode_label(self.sandbox)}" + (" (no real money)" if self.sandbox else "")]
        if self.assignments:
            out.append(f"add {self.assignments} assignment(s) to each of {len(self.hits)} HITs")
            out.append(f"Cost: {self.cost.describe()} (paid when approved)")
        if self.expire_at:
            out.append(f"new expiry {self.expire_at:%Y-%m-%d %H:%M} UTC for {len(self.hits)} HITs")
        return out + [f"Note: {n}" for n in self.notes]


def extend_plan(
    *,
    study: Study,
    assignments: int = 0,
    hours: float | None = None,
    hit_ids: list[str] | None = None,
) -> ExtendPlan:
    """Check an extension: no HIT may go from fewer than 10 assignments to 10 or more."""
    if assignments < 0 or (hours is not None and hours <= 0):
        raise HitError("--assignments and --hours must be positive")
    if not assignments and hours is None:
        raise HitError("say what to extend: --assignments N and/or --hours H")
    sandbox = is_sandbox()
    hits = list(study_hits(study=study, sandbox=sandbox, hit_ids=hit_ids))
    if not hits:
        raise HitError(
            other_mode_note(study=study, sandbox=sandbox)
            or f"study {study.name} has no {mode_label(sandbox)} HITs: publish it first"
        )
    crossing = [
        str(h)
        for h in hits
        if h.max_assignments < fees.LARGE_HIT <= h.max_assignments + assignments
    ]
    if assignments and crossing:
        raise HitError(
            f"MTurk does not let a HIT created with fewer than 10 assignments grow to 10 or "
            f"more (InvalidMaximumAssignmentsIncrease): {', '.join(crossing)}; add fewer, or "
            "publish new HITs with `mturk publish`"
        )
    # each added assignment pays its HIT's rate, which follows the HIT's size after extending
    cost = fees.approvals_cost(
        (h.reward, h.max_assignments + assignments) for h in hits for _ in range(assignments)
    )
    plan = ExtendPlan(
        study=study,
        sandbox=sandbox,
        hits=hits,
        assignments=assignments,
        expire_at=timezone.now() + dt.timedelta(hours=hours) if hours else None,
        cost=cost,
    )
    room = study_capacity(study=study, sandbox=sandbox).needed
    if assignments * len(hits) > room:
        plan.notes.append(
            f"{assignments * len(hits)} new MTurk slots, but only {room} assignments are neither "
            "leased nor offered yet: the extra workers will find the study full"
        )
    return plan


def extend(*, plan: ExtendPlan, client: BaseClient | None = None) -> Outcome:
    """Add the assignments (idempotent per target size) and move the expiry, HIT by HIT."""
    client = client or get_client()
    outcome = Outcome(action="extend")
    for hit in plan.hits:
        try:
            if plan.assignments:
                _add_assignments(client, hit, plan.assignments, outcome)
            if plan.expire_at:
                call(
                    client,
                    "update_expiration_for_hit",
                    study=plan.study,
                    HITId=hit.hit_id,
                    ExpireAt=plan.expire_at,
                )
                hit.expiration = plan.expire_at
                hit.save(update_fields=["expiration"])
        except MTurkError as exc:
            outcome.failed.append(f"{hit.hit_id}: {exc}")
            continue
        outcome.done.append(str(hit))
    return outcome


def _add_assignments(client: BaseClient, hit: Hit, n: int, outcome: Outcome) -> None:
    """Grow the HIT to ``max_assignments + n``: looked up first (``GetHIT``), so a retry after
    a lost answer records the growth instead of adding again, whenever it runs."""
    target = hit.max_assignments + n
    token = f"bs-x-{hit.hit_id}-{target}"[:64]
    info = call(client, "get_hit", study=hit.study, HITId=hit.hit_id)["HIT"]
    if (info.get("MaxAssignments") or 0) >= target:
        outcome.notes.append(f"{hit.hit_id}: MTurk had added these already; recorded")
    else:
        try:
            call(
                client,
                "create_additional_assignments_for_hit",
                study=hit.study,
                HITId=hit.hit_id,
                NumberOfAdditionalAssignments=n,
                UniqueRequestToken=token,
            )
        except MTurkError as exc:
            if not token_already_used(exc):
                raise
            outcome.notes.append(f"{hit.hit_id}: MTurk had added these already; recorded")
    hit.max_assignments = target
    hit.save(update_fields=["max_assignments"])


def study_status(*, study: Study, client: BaseClient | None = None) -> dict[str, Any]:
    """HITs, assignments by MTurk state, disagreements, spend (our rows) and the balance."""
    sandbox = is_sandbox()
    hits = list(study_hits(study=study, sandbox=sandbox))
    counts = dict(
        HitAssignment.objects.filter(hit__study=study, hit__sandbox=sandbox)
        .values_list("mturk_status")
        .annotate(n=Count("id"))
    )
    balance: dict[str, Any] = {}
    try:
        response = call(client or get_client(), "get_account_balance", study=study)
        balance = {
            "available": response.get("AvailableBalance"),
            "on_hold": response.get("OnHoldBalance"),
        }
    except MTurkError as exc:
        balance = {"error": str(exc)}
    return {
        "sandbox": sandbox,
        "hits": hits,
        "by_state": {s: counts.get(s, 0) for s in HitAssignment.MTurkStatus.values},
        "spend": study_spend(study=study, sandbox=sandbox),
        "balance": balance,
        "problems": study_problems(study=study, sandbox=sandbox),
        "note": other_mode_note(study=study, sandbox=sandbox),
        "pending": Hit.objects.filter(study=study, sandbox=sandbox).pending().count(),
    }


def status_lines(status: dict[str, Any]) -> list[str]:
    """``study_status`` as printed by ``mturk status``."""
    out = [f"Mode: {mode_label(status['sandbox'])}"]
    if status["note"]:
        out.append(status["note"])
    for h in status["hits"]:
        expiry = f"{h.expiration:%Y-%m-%d %H:%M}" if h.expiration else "?"
        out.append(
            f"HIT {h.hit_id}: {h.status or '?'}, {h.max_assignments} assignments, "
            f"${fees.money(h.reward)}, expires {expiry}"
        )
    out.append(f"{len(status['hits'])} HITs")
    if status.get("pending"):
        out.append(
            f"{status['pending']} HIT(s) of an interrupted publish are pending: run `mturk "
            "publish` again to look them up on MTurk (nothing is created twice)"
        )
    out.append("assignments: " + ", ".join(f"{k} {v}" for k, v in status["by_state"].items()))
    out.append(spend_line(status["spend"]))
    b = status["balance"]
    if "error" in b:
        out.append(f"balance: unavailable ({b['error']})")
        if "RequestError" in b["error"] or "AWS.MechanicalTurk" in b["error"]:
            out.append("  (is this AWS account linked to an MTurk requester account?)")
    else:
        held = b.get("on_hold") or "0"
        out.append(
            f"balance: ${b['available']} available"
            + (f", ${held} on hold" if Decimal(held) else "")
        )
    out += status["problems"].lines()
    return out
