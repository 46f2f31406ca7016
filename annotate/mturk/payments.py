"""Paying workers: approve, reject and bonus MTurk assignments, and what was spent.

Each action is planned first (which assignments, what it costs, what is skipped and why) so the
caller can show the cost and ask; the run then goes through every assignment, records each
success at once, and keeps going past a failure. Bonus before approve (oTree's order): a failed
bonus leaves the assignment unreviewed. A bonus is never paid twice, at any delay: its intent
(token, amount, time) is written first, and MTurk's bonuses to the assignment are looked up
(``ListBonusPayments``) for one whose reason ends with our ``[ref <token>]`` before sending.
An approve that MTurk refuses is checked with ``GetAssignment``: auto-approved work is done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.client import BaseClient
from django.db.models import QuerySet
from django.utils import timezone

from annotate.analysis.responses import Responses, exclude
from annotate.analysis.selectors import responses_arrays
from annotate.models import Lease, Study
from annotate.mturk import fees
from annotate.mturk.client import MTurkError, call, get_client, is_sandbox, mode_label, pages
from annotate.mturk.models import HitAssignment
from annotate.mturk.tokens import reference_of, token_already_used, with_reference
from annotate.studies.policy import exclusion_rule
from robustness.errors import BlindspotError

Status = HitAssignment.MTurkStatus


class PaymentError(BlindspotError):
    """A payment request that cannot be carried out as asked (nothing was done)."""


@dataclass
class Batch:
    """The assignments an action will touch, its cost, and what it leaves out and why."""

    action: str
    sandbox: bool
    rows: list[HitAssignment]
    cost: fees.Cost | None = None
    skipped: list[str] = field(default_factory=list)
    amount: Decimal | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Mode: {mode_label(self.sandbox)}" + (" (no real money)" if self.sandbox else "")]
        out.append(
            f"{self.action}: {len(self.rows)} assignment{'s' if len(self.rows) != 1 else ''}"
        )
        if self.cost is not None:
            out.append(f"Cost: {self.cost.describe()}")
        return out + [f"Note: {n}" for n in self.notes] + [f"skipped {s}" for s in self.skipped]


@dataclass
class Outcome:
    """What a run did: the assignments done, and one line per failure."""

    action: str
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        out = [f"{self.action}: {len(self.done)} done, {len(self.failed)} failed"]
        return out + self.notes + [f"FAILED {f}" for f in self.failed]


def _rows(study: Study, sandbox: bool) -> QuerySet[HitAssignment]:
    return (
        HitAssignment.objects.filter(hit__study=study, hit__sandbox=sandbox)
        .select_related("hit", "lease__worker")
        .order_by("hit__index", "created")
    )


def _submitted_here(row: HitAssignment) -> bool:
    return row.lease is not None and row.lease.status == Lease.Status.SUBMITTED


def passing_workers(*, study: Study) -> set[str]:
    """Worker ids the study's pre-declared exclusion rule keeps (attention checks passed)."""
    responses = Responses.from_columns(responses_arrays(study=study))
    _, report = exclude(responses, rule=exclusion_rule(study))
    return {str(w["worker"]) for w in report["workers"] if not w["excluded"]}


# --- approve ------------------------------------------------------------------------------


def approve_plan(
    *, study: Study, passing_only: bool = False, include_unknown: bool = False
) -> Batch:
    """Submitted assignments whose work was submitted here (optionally: passing workers only)."""
    sandbox = is_sandbox()
    passing = passing_workers(study=study) if passing_only else set()
    batch = Batch(action="approve", sandbox=sandbox, rows=[])
    waiting = 0
    for row in _rows(study, sandbox):
        if row.mturk_status != Status.SUBMITTED:
            waiting += row.mturk_status == Status.ACCEPTED and _submitted_here(row)
            continue
        if not _submitted_here(row) and not include_unknown:
            batch.skipped.append(
                f"{row.assignment_id} (worker {row.worker_id}): no submitted work here "
                "(--include-unknown to approve anyway)"
            )
            continue
        worker = row.lease.worker.external_id if row.lease else row.worker_id
        if passing_only and worker not in passing:
            batch.skipped.append(
                f"{row.assignment_id} (worker {row.worker_id}): fails the exclusion rule"
            )
            continue
        batch.rows.append(row)
    if waiting:
        batch.skipped.append(
            f"{waiting} submitted here but not (yet) Submitted on MTurk: run `mturk sync` first"
        )
    batch.cost = fees.approvals_cost((r.hit.reward, r.hit.max_assignments) for r in batch.rows)
    return batch


def approve(*, batch: Batch, feedback: str = "", client: BaseClient | None = None) -> Outcome:
    """Approve each assignment of the batch (pays reward + fee); failures don't stop the loop."""
    extra = {"RequesterFeedback": feedback} if feedback else {}
    return _review(batch, "approve", Status.APPROVED, feedback, extra, client)


def _review(
    batch: Batch,
    action: str,
    status: str,
    feedback: str,
    extra: dict[str, Any],
    client: BaseClient | None,
) -> Outcome:
    """Approve or reject each row (``{action}_assignment``) and record MTurk's new status; a
    refused call is checked against MTurk's own record of the assignment (``GetAssignment``)."""
    client = client or get_client()
    outcome = Outcome(action=action)
    for row in batch.rows:
        try:
            call(
                client,
                f"{action}_assignment",
                study=row.hit.study,
                AssignmentId=row.assignment_id,
                **extra,
            )
        except MTurkError as exc:
            if _settled_already(client, row, status, outcome):
                continue
            outcome.failed.append(f"{row.assignment_id}: {exc}")
            continue
        row.mturk_status = status
        row.reviewed = timezone.now()
        row.feedback = feedback[:1024]
        row.save(update_fields=["mturk_status", "reviewed", "feedback", "updated"])
        outcome.done.append(row.assignment_id)
    return outcome


def _settled_already(client: BaseClient, row: HitAssignment, status: str, out: Outcome) -> bool:
    """After a refused approve or reject: if MTurk says the assignment is in ``status`` already
    (auto-approved after AutoApprovalDelayInSeconds, or an earlier call whose answer was lost),
    record it and count it done; True then. Any other state is recorded and stays a failure."""
    try:
        found = call(client, "get_assignment", study=row.hit.study, AssignmentId=row.assignment_id)[
            "Assignment"
        ]
    except MTurkError:
        return False
    state = found.get("AssignmentStatus", "")
    if state not in Status.values or state == row.mturk_status:
        return False
    row.mturk_status = state
    row.reviewed = found.get("ApprovalTime") or found.get("RejectionTime") or timezone.now()
    row.save(update_fields=["mturk_status", "reviewed", "updated"])
    if state != status:
        return False
    auto = found.get("AutoApprovalTime")
    if state == Status.APPROVED and auto is not None and row.reviewed >= auto:
        out.notes.append(f"{row.assignment_id}: auto-approved by MTurk; recorded as approved")
    else:
        out.notes.append(f"{row.assignment_id}: MTurk had it {state} already; recorded")
    out.done.append(row.assignment_id)
    return True


# --- reject -------------------------------------------------------------------------------


def reject_plan(*, study: Study, assignment_ids: Iterable[str]) -> Batch:
    """The named Submitted assignments; an id that is not this study's refuses the whole batch."""
    sandbox = is_sandbox()
    ids = list(dict.fromkeys(a.strip() for a in assignment_ids if a.strip()))
    if not ids:
        raise PaymentError("name at least one assignment to reject (--assignment ID)")
    rows = {r.assignment_id: r for r in _rows(study, sandbox).filter(assignment_id__in=ids)}
    missing = [a for a in ids if a not in rows]
    if missing:
        raise PaymentError(
            f"not assignments of study {study.name} in {mode_label(sandbox)} mode: "
            f"{', '.join(missing)} (run `mturk sync` first?); nothing was rejected"
        )
    batch = Batch(action="reject", sandbox=sandbox, rows=[])
    for a in ids:
        row = rows[a]
        if row.mturk_status != Status.SUBMITTED:
            batch.skipped.append(f"{a}: it is {row.mturk_status} on MTurk; only Submitted work")
        else:
            batch.rows.append(row)
    return batch


def reject(*, batch: Batch, reason: str, client: BaseClient | None = None) -> Outcome:
    """Reject each assignment with ``reason`` (MTurk requires it and shows it to the worker)."""
    if not (reason or "").strip():
        raise PaymentError("a reason is required: MTurk shows it to the worker")
    return _review(batch, "reject", Status.REJECTED, reason, {"RequesterFeedback": reason}, client)


# --- bonus --------------------------------------------------------------------------------


def bonus_token(assignment_id: str) -> str:
    """The bonus's idempotency token, derived from the assignment (≤ 64 characters)."""
    token = f"bs-bonus-{assignment_id}"
    if len(token) > 64:
        token = "bs-bonus-" + hashlib.sha256(assignment_id.encode()).hexdigest()[:40]
    return token


def bonus_plan(
    *,
    study: Study,
    amount: Decimal,
    workers: Iterable[str] = (),
    all_approved: bool = False,
) -> Batch:
    """One bonus per submitted or approved assignment of the named workers (or of everyone
    approved); assignments already bonused are skipped, so a second run never pays twice. One
    whose bonus an interrupted run intended is included: it is looked up before anything is sent.
    """
    sandbox = is_sandbox()
    workers = [w.strip() for w in workers if w.strip()]
    if bool(workers) == bool(all_approved):
        raise PaymentError("name the workers (--worker W …) or pass --all-approved, not both")
    rows = _rows(study, sandbox)
    if all_approved:
        rows = rows.filter(mturk_status=Status.APPROVED)
    else:
        rows = rows.filter(
            worker_id__in=workers, mturk_status__in=[Status.SUBMITTED, Status.APPROVED]
        )
    batch = Batch(action="bonus", sandbox=sandbox, rows=[], amount=amount)
    for row in rows:
        if row.bonused is not None:
            batch.skipped.append(
                f"{row.assignment_id} (worker {row.worker_id}): already bonused ${row.bonus}"
            )
        else:
            batch.rows.append(row)
    interrupted = sum(r.bonus_intended is not None for r in batch.rows)
    if interrupted:
        batch.notes.append(
            f"{interrupted} bonus(es) of an interrupted run are looked up on MTurk first and "
            "sent only if MTurk has none of ours"
        )
    found = {r.worker_id for r in rows}
    for worker in workers:
        if worker not in found:
            batch.skipped.append(f"worker {worker}: no submitted or approved assignment here")
    batch.cost = fees.bonuses_cost(len(batch.rows), amount)
    return batch


def bonus(
    *, batch: Batch, amount: Decimal, reason: str, client: BaseClient | None = None
) -> Outcome:
    """Pay each bonus once: intent first, then MTurk's bonuses to the assignment looked up, and
    only if none of ours is there, ``SendBonus`` (its reason ends with our reference)."""
    if not (reason or "").strip():
        raise PaymentError("a reason is required: MTurk shows it to the worker")
    client = client or get_client()
    outcome = Outcome(action="bonus")
    for row in batch.rows:
        try:
            _bonus_one(client, row, amount, reason, outcome)
        except MTurkError as exc:
            outcome.failed.append(f"{row.assignment_id}: {exc}")
            continue
        outcome.done.append(row.assignment_id)
    return outcome


def _bonus_one(
    client: BaseClient, row: HitAssignment, amount: Decimal, reason: str, outcome: Outcome
) -> None:
    """One assignment's bonus, paid or found paid when this returns (MTurkError otherwise)."""
    if row.bonus_intended is None:
        _intend_bonus(row, amount)
    paid = bonus_paid(client, row)
    if paid is not None:
        note = f"{row.assignment_id}: MTurk had this bonus already; recorded"
        if paid != amount:
            note += f" as paid, ${fees.money(paid)} (not ${fees.money(amount)})"
        outcome.notes.append(note)
        _bonused(row, paid)
        return
    if row.bonus != amount:  # an interrupted run intended another amount, never paid it
        _intend_bonus(row, amount)
    try:
        call(
            client,
            "send_bonus",
            study=row.hit.study,
            WorkerId=row.worker_id,
            BonusAmount=fees.money(amount),
            AssignmentId=row.assignment_id,
            Reason=with_reference(reason, row.bonus_token),
            UniqueRequestToken=row.bonus_token,
        )
    except MTurkError as exc:
        if not token_already_used(exc):
            raise
        outcome.notes.append(f"{row.assignment_id}: MTurk had this bonus already; recorded")
    _bonused(row, amount)


def _intend_bonus(row: HitAssignment, amount: Decimal) -> None:
    """Write (and commit) the bonus's intent before MTurk hears of it."""
    row.bonus_token = bonus_token(row.assignment_id)
    row.bonus = amount
    row.bonus_intended = timezone.now()
    row.save(update_fields=["bonus_token", "bonus", "bonus_intended", "updated"])


def _bonused(row: HitAssignment, amount: Decimal) -> None:
    row.bonus = amount
    row.bonused = timezone.now()
    row.save(update_fields=["bonus", "bonused", "updated"])


def bonus_paid(client: BaseClient, row: HitAssignment) -> Decimal | None:
    """The amount of our bonus MTurk lists for the row's assignment (every page of
    ``ListBonusPayments``): to its worker, with a reason ending in our reference; else None."""
    token = row.bonus_token or bonus_token(row.assignment_id)
    for page in pages(
        client, "list_bonus_payments", study=row.hit.study, AssignmentId=row.assignment_id
    ):
        for payment in page.get("BonusPayments", []):
            if (
                payment.get("WorkerId") == row.worker_id
                and reference_of(payment.get("Reason", "")) == token
            ):
                return Decimal(payment["BonusAmount"])
    return None


# --- spend --------------------------------------------------------------------------------


def study_spend(*, study: Study, sandbox: bool | None = None) -> dict[str, Any]:
    """Money out so far in this mode: approved rewards and bonuses, each with MTurk's fees."""
    sandbox = is_sandbox() if sandbox is None else sandbox
    rows = list(_rows(study, sandbox))
    approved = fees.approvals_cost(
        (r.hit.reward, r.hit.max_assignments) for r in rows if r.mturk_status == Status.APPROVED
    )
    bonused = [r.bonus for r in rows if r.bonused is not None and r.bonus is not None]
    bonus_paid = sum(bonused, Decimal("0.00"))
    bonus_fees = sum((fees.bonus_fee(b) for b in bonused), Decimal("0.00"))
    total = approved.total + bonus_paid + bonus_fees
    return {
        "approved": approved.assignments,
        "rewards": approved.paid,
        "reward_fees": approved.fees,
        "bonuses": len(bonused),
        "bonus_paid": bonus_paid,
        "bonus_fees": bonus_fees,
        "total": total,
    }


def spend_line(spend: dict[str, Any]) -> str:
    """The spend in one line."""
    m = fees.money
    return (
        f"spent ${m(spend['total'])}: {spend['approved']} approved (${m(spend['rewards'])} + "
        f"${m(spend['reward_fees'])} fees), {spend['bonuses']} bonuses "
        f"(${m(spend['bonus_paid'])} + ${m(spend['bonus_fees'])} fees)"
    )
