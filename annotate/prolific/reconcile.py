"""``prolific sync`` and the webhook: Prolific's view of the submissions merged into ours, and
what disagrees.

One path, :func:`apply_submission`, takes a submission as Prolific describes it (from a page of
the list, one GET, or a webhook) and updates our row: a returned, timed-out or screened-out
submission frees its assignment at once, a known start time tightens the lease's deadline.
Nothing is dropped: a submission we never saw is kept (no lease) and reported, and so is work
submitted here whose participant never reached Prolific's completion page.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotate.models import Lease, Study
from annotate.prolific.client import ProlificClient, ProlificError, get_client
from annotate.prolific.handshake import DEADLINE_MARGIN
from annotate.prolific.models import ProlificStudy, ProlificSubmission
from annotate.work.leases import lease_release

Status = ProlificSubmission.Status
#: Prolific's statuses that end an attempt without work: the assignment is free again.
GONE = {Status.RETURNED, Status.TIMED_OUT, Status.SCREENED_OUT}
#: Statuses in which the participant reached the completion page.
COMPLETED = {Status.AWAITING_REVIEW, Status.APPROVED, Status.REJECTED, Status.PARTIALLY_APPROVED}
#: How long work submitted here may wait for Prolific to show the submission completed.
COMPLETION_GRACE = dt.timedelta(minutes=10)


def _when(value: Any) -> dt.datetime | None:
    return parse_datetime(value) if isinstance(value, str) and value else None


@transaction.atomic
def apply_submission(
    remote: ProlificStudy, data: dict[str, Any], *, now: dt.datetime | None = None
) -> tuple[ProlificSubmission, bool]:
    """Merge Prolific's description of one submission into its row; (row, created)."""
    now = now or timezone.now()
    status = str(data.get("status") or Status.UNKNOWN)
    if status not in Status.values:
        status = Status.UNKNOWN
    participant = str(data.get("participant_id") or data.get("participant") or "")
    row, created = ProlificSubmission.objects.select_for_update().get_or_create(
        submission_id=str(data["id"]),
        defaults={
            "prolific_study": remote,
            "participant_id": participant,
            "lease": _lease_for(remote.study, str(data["id"]), participant),
        },
    )
    row.status = status if status != Status.UNKNOWN else row.status
    row.started_at = _when(data.get("started_at")) or row.started_at
    row.completed_at = _when(data.get("completed_at")) or row.completed_at
    if row.lease is None and participant:
        row.lease = _lease_for(remote.study, row.submission_id, participant)
    row.synced = now
    row.save()
    lease = row.lease
    if lease is not None and lease.status == Lease.Status.ACTIVE:
        if row.status in GONE:
            lease_release(lease, reason=f"prolific {row.status.lower()}", now=now)
        elif row.started_at is not None:
            deadline = row.started_at + dt.timedelta(minutes=remote.max_minutes) - DEADLINE_MARGIN
            if lease.deadline is None or deadline < lease.deadline:
                Lease.objects.filter(pk=lease.pk).update(
                    deadline=deadline, expires=min(lease.expires, deadline)
                )
    return row, created


def _lease_for(study: Study, submission_id: str, participant: str) -> Lease | None:
    """The lease the participant page took for this submission, if exactly one matches."""
    leases = list(
        Lease.objects.filter(
            study=study, provider_ref=submission_id, worker__external_id=participant
        ).order_by("-leased")[:2]
    )
    return leases[0] if len(leases) == 1 else None


@dataclass
class Problems:
    """Submissions on which Prolific and Blindspot disagree (kept, never dropped)."""

    unknown: list[ProlificSubmission] = field(default_factory=list)
    lost_completions: list[ProlificSubmission] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for row in self.unknown:
            why = "unknown here" if row.lease is None else f"lease {row.lease.status} here"
            out.append(
                f"Prolific {row.status}, {why}: submission {row.submission_id} participant "
                f"{row.participant_id} — not approved automatically; review it, then "
                "`prolific reject` or `prolific approve --include-unknown`"
            )
        for row in self.lost_completions:
            assert row.lease is not None
            out.append(
                f"submitted here, still {row.status} on Prolific: submission "
                f"{row.submission_id} participant {row.participant_id} — they did not reach the "
                "completion page; message them the link (`prolific message`) or approve by hand "
                "once Prolific shows it awaiting review"
            )
        return out


def study_problems(*, study: Study, now: dt.datetime | None = None) -> Problems:
    """The disagreements in our database as of the last sync (no Prolific call)."""
    now = now or timezone.now()
    problems = Problems()
    rows = ProlificSubmission.objects.filter(prolific_study__study=study).select_related("lease")
    for row in rows.order_by("created"):
        here = row.lease is not None and row.lease.status == Lease.Status.SUBMITTED
        if row.status in COMPLETED and row.status != Status.REJECTED and not here:
            problems.unknown.append(row)
        elif (
            here
            and row.status in (Status.ACTIVE, Status.UNKNOWN)
            and row.lease is not None
            and row.lease.submitted is not None
            and now - row.lease.submitted > COMPLETION_GRACE
        ):
            problems.lost_completions.append(row)
    return problems


@dataclass
class SyncReport:
    studies: list[str] = field(default_factory=list)
    listed: int = 0
    created: int = 0
    freed: int = 0
    by_state: Counter = field(default_factory=Counter)
    problems: Problems = field(default_factory=Problems)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.studies)
        out.append(
            f"{self.listed} submissions listed by Prolific ({self.created} new here); "
            f"{self.freed} returned or timed-out assignments freed"
        )
        states = ", ".join(f"{s} {n}" for s, n in sorted(self.by_state.items())) or "none"
        out.append(f"submissions by Prolific state: {states}")
        out += self.problems.lines()
        if not self.problems.unknown and not self.problems.lost_completions:
            out.append("no disagreements between Prolific and Blindspot")
        return out + [f"FAILED: {e}" for e in self.errors]


def study_sync(
    *, study: Study, client: ProlificClient | None = None, now: dt.datetime | None = None
) -> SyncReport:
    """Refresh every Prolific study of ``study`` and page through its submissions."""
    client = client or get_client()
    now = now or timezone.now()
    report = SyncReport()
    for remote in ProlificStudy.objects.filter(study=study).exclude(prolific_id=""):
        try:
            info = client.get_study(remote.prolific_id, study=study)
            remote.remote_status = info.get("status", remote.remote_status)
            report.studies.append(
                f"Prolific study {remote.prolific_id}: {remote.remote_status}, "
                f"{info.get('places_taken', '?')} of {info.get('total_available_places', '?')} "
                "places taken"
            )
            for data in client.submissions(remote.prolific_id, study=study):
                before = _active_lease(data)
                row, created = apply_submission(remote, data, now=now)
                report.listed += 1
                report.created += created
                report.freed += before and row.status in GONE
            remote.synced = now
            remote.save(update_fields=["remote_status", "synced"])
        except ProlificError as exc:
            report.errors.append(f"{remote.prolific_id}: {exc}")
    rows = ProlificSubmission.objects.filter(prolific_study__study=study)
    report.by_state = Counter(rows.values_list("status", flat=True))
    report.problems = study_problems(study=study, now=now)
    return report


def _active_lease(data: dict[str, Any]) -> bool:
    return ProlificSubmission.objects.filter(
        submission_id=str(data.get("id")), lease__status=Lease.Status.ACTIVE
    ).exists()
