"""Paying participants on Prolific: approve, reject, bonus — each planned and priced first, and
none carried out twice at any delay.

Approve and reject write the intent on the submission, look its status up, and only then
transition it. A bonus is a :class:`ProlificBonus` written before setup; its pay request is
marked before it is sent, because Prolific's pay call is not idempotent. A run that finds a pay
request without an answer looks for the bonus on the submissions (where it appears a while after
payment) and pays again only if it has not appeared after ``PROLIFIC_BONUS_SETTLE_HOURS``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotate.analysis.responses import Responses, exclude
from annotate.analysis.selectors import responses_arrays
from annotate.models import Lease, Study
from annotate.prolific import fees
from annotate.prolific.client import ProlificClient, ProlificError, get_client, mode_label
from annotate.prolific.models import ProlificBonus, ProlificStudy, ProlificSubmission
from annotate.studies.policy import exclusion_rule
from robustness.errors import BlindspotError

Status = ProlificSubmission.Status
MIN_REJECT_MESSAGE = 100  # Prolific's rule: a rejection explains itself in ≥ 100 characters
CATEGORIES = (
    "TOO_QUICKLY",
    "TOO_SLOWLY",
    "FAILED_INSTRUCTIONS",
    "INCOMP_LONGITUDINAL",
    "FAILED_CHECK",
    "LOW_EFFORT",
    "MALINGERING",
    "NO_CODE",
    "BAD_CODE",
    "NO_DATA",
    "UNSUPP_DEVICE",
    "OTHER",
)


class PaymentError(BlindspotError):
    """A payment request that cannot be carried out as asked (nothing was done)."""


@dataclass
class Batch:
    """The submissions an action will touch, what it costs, and what it leaves out and why."""

    action: str
    rows: list[ProlificSubmission]
    cost: fees.Cost | None = None
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Mode: {mode_label()}", f"{self.action}: {len(self.rows)} submission(s)"]
        if self.cost is not None:
            out.append(f"Cost: {self.cost.describe()}")
        return out + [f"skipped {s}" for s in self.skipped]


@dataclass
class Outcome:
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


def _rows(study: Study):
    return (
        ProlificSubmission.objects.filter(prolific_study__study=study)
        .select_related("prolific_study", "lease__worker")
        .order_by("created")
    )


def _submitted_here(row: ProlificSubmission) -> bool:
    return row.lease is not None and row.lease.status == Lease.Status.SUBMITTED


def passing_participants(*, study: Study) -> set[str]:
    """Participant ids the study's pre-declared exclusion rule keeps."""
    responses = Responses.from_columns(responses_arrays(study=study))
    _, report = exclude(responses, rule=exclusion_rule(study))
    return {str(w["worker"]) for w in report["workers"] if not w["excluded"]}


def _reward(row: ProlificSubmission) -> Decimal:
    return fees.from_minor(row.prolific_study.reward)


# --- approve ------------------------------------------------------------------------------


def approve_plan(
    *, study: Study, passing_only: bool = False, include_unknown: bool = False
) -> Batch:
    """Submissions awaiting review whose work was submitted here (optionally: passing only)."""
    passing = passing_participants(study=study) if passing_only else set()
    batch = Batch(action="approve", rows=[])
    for row in _rows(study):
        if row.status != Status.AWAITING_REVIEW and row.review_intent != "APPROVE":
            continue
        if row.status == Status.APPROVED:
            continue
        if not _submitted_here(row) and not include_unknown:
            batch.skipped.append(
                f"{row.submission_id} ({row.participant_id}): no submitted work here "
                "(--include-unknown to approve anyway)"
            )
            continue
        if passing_only and row.participant_id not in passing:
            batch.skipped.append(f"{row.submission_id} ({row.participant_id}): fails the rule")
            continue
        batch.rows.append(row)
    currency = batch.rows[0].prolific_study.currency if batch.rows else "GBP"
    batch.cost = fees.cost(
        _reward(batch.rows[0]) if batch.rows else Decimal(0), len(batch.rows), currency
    )
    return batch


def approve(*, batch: Batch, client: ProlificClient | None = None) -> Outcome:
    """Approve the batch: intent on each row, look up, bulk-approve what still awaits review."""
    client = client or get_client()
    outcome = Outcome(action="approve")
    ProlificSubmission.objects.filter(pk__in=[r.pk for r in batch.rows]).update(
        review_intent="APPROVE"
    )
    by_study: dict[int, list[ProlificSubmission]] = {}
    for row in batch.rows:
        by_study.setdefault(row.prolific_study_id, []).append(row)
    for rows in by_study.values():
        remote = rows[0].prolific_study
        waiting = []
        for row in rows:
            try:
                status = client.get_submission(row.submission_id, study=remote.study)["status"]
            except ProlificError as exc:
                outcome.failed.append(f"{row.submission_id}: {exc}")
                continue
            if status == Status.APPROVED:
                _reviewed(row, Status.APPROVED)
                outcome.done.append(row.submission_id)
                outcome.notes.append(f"{row.submission_id}: already approved on Prolific")
            elif status == Status.AWAITING_REVIEW:
                waiting.append(row)
            else:
                outcome.failed.append(f"{row.submission_id}: it is {status} on Prolific")
        if not waiting:
            continue
        try:
            client.bulk_approve(
                remote.prolific_id, [r.submission_id for r in waiting], study=remote.study
            )
        except ProlificError as exc:
            outcome.failed += [f"{r.submission_id}: {exc}" for r in waiting]
            continue
        for row in waiting:
            _reviewed(row, Status.APPROVED)
            outcome.done.append(row.submission_id)
    return outcome


def _reviewed(row: ProlificSubmission, status: str, message: str = "") -> None:
    row.status = status
    row.reviewed = timezone.now()
    if message:
        row.review_message = message
    row.save(update_fields=["status", "reviewed", "review_message", "updated"])


# --- reject -------------------------------------------------------------------------------


def reject_plan(*, study: Study, submission_ids: Iterable[str]) -> Batch:
    """The named submissions awaiting review; an id not of this study refuses the batch."""
    ids = list(dict.fromkeys(s.strip() for s in submission_ids if s.strip()))
    if not ids:
        raise PaymentError("name at least one submission to reject (--submission ID)")
    rows = {r.submission_id: r for r in _rows(study).filter(submission_id__in=ids)}
    missing = [s for s in ids if s not in rows]
    if missing:
        raise PaymentError(
            f"not submissions of study {study.name}: {', '.join(missing)} "
            "(run `prolific sync` first?); nothing was rejected"
        )
    batch = Batch(action="reject", rows=[])
    for s in ids:
        if rows[s].status != Status.AWAITING_REVIEW:
            batch.skipped.append(f"{s}: it is {rows[s].status}; only work awaiting review")
        else:
            batch.rows.append(rows[s])
    return batch


def reject(
    *, batch: Batch, reason: str, category: str = "OTHER", client: ProlificClient | None = None
) -> Outcome:
    """Reject each submission with ``reason`` (shown to the participant) and a category."""
    reason = " ".join((reason or "").split())
    if len(reason) < MIN_REJECT_MESSAGE:
        raise PaymentError(
            f"the reason must be at least {MIN_REJECT_MESSAGE} characters (Prolific shows it to "
            f"the participant); this one has {len(reason)}"
        )
    if category not in CATEGORIES:
        raise PaymentError(f"--category must be one of {', '.join(CATEGORIES)}")
    client = client or get_client()
    outcome = Outcome(action="reject")
    for row in batch.rows:
        row.review_intent, row.review_message = "REJECT", reason
        row.save(update_fields=["review_intent", "review_message", "updated"])
        try:
            status = client.get_submission(row.submission_id, study=row.prolific_study.study)[
                "status"
            ]
            if status == Status.AWAITING_REVIEW:
                client.transition_submission(
                    row.submission_id,
                    "REJECT",
                    message=reason,
                    category=category,
                    study=row.prolific_study.study,
                )
                status = Status.REJECTED
        except ProlificError as exc:
            outcome.failed.append(f"{row.submission_id}: {exc}")
            continue
        if status != Status.REJECTED:
            outcome.failed.append(f"{row.submission_id}: it is {status} on Prolific")
            continue
        _reviewed(row, Status.REJECTED, reason)
        outcome.done.append(row.submission_id)
    return outcome


# --- bonus --------------------------------------------------------------------------------


def bonus_plan(
    *,
    study: Study,
    amount: Decimal,
    participants: Iterable[str] = (),
    all_approved: bool = False,
) -> Batch:
    """One bonus per submission of the named participants (or of everyone approved); one that
    has a bonus of ours already is skipped, so a second run never pays twice."""
    participants = [p.strip() for p in participants if p.strip()]
    if bool(participants) == bool(all_approved):
        raise PaymentError("name the participants (--participant P …) or --all-approved, not both")
    rows = _rows(study)
    if all_approved:
        rows = rows.filter(status=Status.APPROVED)
    else:
        rows = rows.filter(
            participant_id__in=participants, status__in=[Status.AWAITING_REVIEW, Status.APPROVED]
        )
    batch = Batch(action="bonus", rows=[])
    for row in rows:
        if row.bonus_id is not None:
            batch.skipped.append(f"{row.submission_id} ({row.participant_id}): bonused already")
        else:
            batch.rows.append(row)
    found = {r.participant_id for r in rows}
    batch.skipped += [
        f"participant {p}: no submission to bonus" for p in participants if p not in found
    ]
    currency = batch.rows[0].prolific_study.currency if batch.rows else "GBP"
    batch.cost = fees.cost(amount, len(batch.rows), currency)
    return batch


def bonus(
    *, batch: Batch, amount: Decimal, reason: str = "", client: ProlificClient | None = None
) -> Outcome:
    """Write the bonus (one per Prolific study), then set it up and pay it (:func:`settle`)."""
    client = client or get_client()
    outcome = Outcome(action="bonus")
    by_study: dict[int, list[ProlificSubmission]] = {}
    for row in batch.rows:
        by_study.setdefault(row.prolific_study_id, []).append(row)
    for rows in by_study.values():
        with transaction.atomic():
            record = ProlificBonus.objects.create(
                prolific_study=rows[0].prolific_study, amount=fees.to_minor(amount), reason=reason
            )
            taken = ProlificSubmission.objects.filter(
                pk__in=[r.pk for r in rows], bonus__isnull=True
            ).update(bonus=record)
            if taken != len(rows):  # another run took some of them meanwhile
                transaction.set_rollback(True)
                outcome.failed.append("another bonus run took these submissions; run it again")
                continue
        _settle_into(record, client, outcome)
    return outcome


def unfinished(study: Study) -> list[ProlificBonus]:
    """The study's bonuses not yet paid (or paid but not yet seen on the submissions)."""
    return list(
        ProlificBonus.objects.filter(prolific_study__study=study)
        .exclude(state=ProlificBonus.State.CONFIRMED)
        .order_by("created")
    )


def settle_all(
    *, study: Study, client: ProlificClient | None = None, now: dt.datetime | None = None
) -> Outcome:
    """Carry every unfinished bonus of the study one step further (what a crashed run left)."""
    client = client or get_client()
    outcome = Outcome(action="bonuses resumed")
    for record in unfinished(study):
        _settle_into(record, client, outcome, now=now)
    return outcome


def _settle_into(
    record: ProlificBonus,
    client: ProlificClient,
    outcome: Outcome,
    *,
    now: dt.datetime | None = None,
) -> None:
    try:
        outcome.notes += settle(record, client=client, now=now)
    except ProlificError as exc:
        outcome.failed.append(f"bonus {record.pk}: {exc}")
        return
    if record.state in (ProlificBonus.State.PAID, ProlificBonus.State.CONFIRMED):
        outcome.done += [s.submission_id for s in record.submissions.all()]


def _shown(record: ProlificBonus, client: ProlificClient) -> tuple[int, int]:
    """How many of the bonus's submissions show a bonus of ours beyond their baseline."""
    rows = list(record.submissions.all())
    shown = 0
    for row in rows:
        data = client.get_submission(row.submission_id, study=record.prolific_study.study)
        paid = [int(p) for p in _bonus_amounts(data)]
        shown += len(paid) > row.bonus_baseline and record.amount in paid[row.bonus_baseline :]
    return shown, len(rows)


def _bonus_amounts(data: dict[str, Any]) -> list[Any]:
    payments = data.get("bonus_payments") or []
    return [p.get("amount", 0) if isinstance(p, dict) else p for p in payments]


def settle(
    record: ProlificBonus, *, client: ProlificClient, now: dt.datetime | None = None
) -> list[str]:
    """One bonus as far as it can safely go: set up, pay once, confirm. Lines of what it did."""
    now = now or timezone.now()
    remote = record.prolific_study
    study = remote.study
    rows = list(record.submissions.all())
    State = ProlificBonus.State
    lines = []
    if record.state == State.PLANNED:
        answer = client.setup_bonuses(
            remote.prolific_id,
            [(r.submission_id, fees.from_minor(record.amount)) for r in rows],
            study=study,
        )
        record.bulk_id, record.cost, record.state = answer["id"], answer, State.SET_UP
        record.save(update_fields=["bulk_id", "cost", "state"])
        lines.append(f"bonus {record.pk}: set up as {record.bulk_id} ({len(rows)} participants)")
    if record.state == State.SET_UP:
        for row in rows:  # what each submission shows before ours, to recognise ours later
            data = client.get_submission(row.submission_id, study=study)
            row.bonus_baseline = len(_bonus_amounts(data))
            row.save(update_fields=["bonus_baseline", "updated"])
        _pay(record, client, now)
        lines.append(f"bonus {record.pk}: paid ({record.bulk_id})")
    elif record.state == State.PAYING:
        shown, total = _shown(record, client)
        settle_after = dt.timedelta(
            hours=float(getattr(settings, "PROLIFIC_BONUS_SETTLE_HOURS", 24))
        )
        assert record.pay_requested is not None
        if shown:
            record.state, record.paid = State.PAID, record.pay_requested
            record.save(update_fields=["state", "paid"])
            lines.append(
                f"bonus {record.pk}: the interrupted pay request went through "
                f"({shown} of {total} submissions show it); not paid again"
            )
        elif now - record.pay_requested < settle_after:
            sent = f"{record.pay_requested:%Y-%m-%d %H:%M}"
            retry = f"{record.pay_requested + settle_after:%Y-%m-%d %H:%M}"
            lines.append(
                f"bonus {record.pk}: a pay request was sent at {sent} UTC and its answer was "
                "lost; Prolific shows paid bonuses a while later, so it is not paid again "
                f"before {retry} UTC (PROLIFIC_BONUS_SETTLE_HOURS)"
            )
        else:
            _pay(record, client, now)
            lines.append(
                f"bonus {record.pk}: not on any submission {settle_after} after the lost "
                "request, so that request never reached Prolific; paid now"
            )
    if record.state == State.PAID:
        shown, total = _shown(record, client)
        if shown == total:
            record.state, record.confirmed = State.CONFIRMED, now
            record.save(update_fields=["state", "confirmed"])
            lines.append(f"bonus {record.pk}: confirmed on all {total} submissions")
    return lines


def _pay(record: ProlificBonus, client: ProlificClient, now: dt.datetime) -> None:
    """Mark the pay request, send it once, record the answer."""
    record.state, record.pay_requested = ProlificBonus.State.PAYING, now
    record.save(update_fields=["state", "pay_requested"])
    client.pay_bonuses(record.bulk_id, study=record.prolific_study.study)
    record.state, record.paid = ProlificBonus.State.PAID, timezone.now()
    record.save(update_fields=["state", "paid"])


# --- spend --------------------------------------------------------------------------------


def study_spend(*, study: Study) -> dict[str, Any]:
    """Money out so far: approved rewards and paid bonuses, each with Prolific's fee and VAT."""
    remotes = list(ProlificStudy.objects.filter(study=study))
    currency = remotes[0].currency if remotes else "GBP"
    approved = _rows(study).filter(status=Status.APPROVED)
    rewards = sum((_reward(r) for r in approved), Decimal("0.00"))
    paid = ProlificBonus.objects.filter(
        prolific_study__study=study,
        state__in=[ProlificBonus.State.PAID, ProlificBonus.State.CONFIRMED],
    )
    bonus_total = sum(
        (fees.from_minor(b.amount) * b.submissions.count() for b in paid), Decimal("0.00")
    )
    reward_cost = fees.cost(rewards, 1, currency)
    bonus_cost = fees.cost(bonus_total, 1, currency)
    return {
        "currency": currency,
        "approved": approved.count(),
        "rewards": rewards,
        "bonuses": sum(b.submissions.count() for b in paid),
        "bonus_paid": bonus_total,
        "fees": reward_cost.fee + bonus_cost.fee,
        "vat": reward_cost.vat + bonus_cost.vat,
        "total": reward_cost.total + bonus_cost.total,
    }


def spend_line(spend: dict[str, Any]) -> str:
    c = spend["currency"]
    return (
        f"spent {fees.show(spend['total'], c)}: {spend['approved']} approved "
        f"({fees.show(spend['rewards'], c)}), {spend['bonuses']} bonuses "
        f"({fees.show(spend['bonus_paid'], c)}), fees {fees.show(spend['fees'], c)}"
        + (f", VAT {fees.show(spend['vat'], c)}" if spend["vat"] else "")
    )
