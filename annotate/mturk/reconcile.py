"""``mturk sync``: MTurk's view of a study's HITs and assignments, merged into ours, and what
disagrees.

Our database is the truth about work; ``HitAssignment.mturk_status`` is MTurk's truth about
payment. Nothing is ever dropped: an assignment MTurk lists that we never saw is kept (with no
lease) and reported, and so is work submitted here that MTurk never received (a lost
externalSubmit, psiTurk #390). A lease whose MTurk assignment was returned or abandoned is
freed at once (``lease_release``), so its images go to the next worker without waiting.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient
from django.db import transaction
from django.utils import timezone

from annotate.models import Lease, Study
from annotate.mturk.client import MTurkError, call, get_client, is_sandbox, pages
from annotate.mturk.models import Hit, HitAssignment
from annotate.work.leases import lease_release

STATUSES = ["Submitted", "Approved", "Rejected"]  # all ListAssignmentsForHIT can return
GONE = frozenset({"Returned", "Abandoned"})  # not in MTurk's API today; taken as gone if seen
Status = HitAssignment.MTurkStatus


@dataclass
class Problems:
    """Assignments on which MTurk and Blindspot disagree (both lists kept, never dropped)."""

    unknown: list[HitAssignment] = field(default_factory=list)  # Submitted there, no work here
    lost_submits: list[HitAssignment] = field(default_factory=list)  # submitted here, not on MTurk

    def lines(self) -> list[str]:
        out = []
        for row in self.unknown:
            why = "unknown here" if row.lease is None else f"lease {row.lease.status} here"
            out.append(
                f"MTurk {row.mturk_status}, {why}: assignment {row.assignment_id} worker "
                f"{row.worker_id} (HIT {row.hit.hit_id}) — not approved automatically; review it, "
                "then `mturk reject` or `mturk approve --include-unknown`"
            )
        for row in self.lost_submits:
            code = row.lease.completion_code if row.lease else "?"
            out.append(
                f"submitted here, not on MTurk: assignment {row.assignment_id} worker "
                f"{row.worker_id} (HIT {row.hit.hit_id}, completion code {code}) — MTurk never "
                "got the submit; ask the worker to submit the HIT on MTurk while it is open (the "
                "code is on their page), or pay them with `mturk bonus` on another of their "
                "assignments or a compensation HIT (docs/mturk.md)"
            )
        return out


def study_problems(*, study: Study, sandbox: bool | None = None) -> Problems:
    """The disagreements in our database as of the last sync (no MTurk call)."""
    sandbox = is_sandbox() if sandbox is None else sandbox
    rows = HitAssignment.objects.filter(hit__study=study, hit__sandbox=sandbox).select_related(
        "hit", "lease"
    )
    problems = Problems()
    for row in rows.order_by("hit__index", "created"):
        here = row.lease is not None and row.lease.status == Lease.Status.SUBMITTED
        if row.mturk_status == Status.SUBMITTED and not here:
            problems.unknown.append(row)
        elif row.mturk_status == Status.ACCEPTED and here:
            problems.lost_submits.append(row)
    return problems


@dataclass
class SyncReport:
    """What a sync saw and changed."""

    hits: list[dict[str, Any]] = field(default_factory=list)
    listed: int = 0
    created: int = 0
    updated: int = 0
    by_state: Counter = field(default_factory=Counter)
    problems: Problems = field(default_factory=Problems)
    released: list[str] = field(default_factory=list)  # one line per lease freed
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"HIT {h['hit_id']}: {h['status']}, {h['available']} available, {h['pending']} "
            f"pending, {h['completed']} completed of {h['max']}"
            for h in self.hits
        ]
        out.append(
            f"{len(self.hits)} HITs, {self.listed} assignments listed by MTurk "
            f"({self.created} new here, {self.updated} updated)"
        )
        states = ", ".join(f"{state} {self.by_state.get(state, 0)}" for state in Status.values)
        out.append(f"assignments by MTurk state: {states}")
        out += self.released
        out += self.problems.lines()
        if not self.problems.unknown and not self.problems.lost_submits:
            out.append("no disagreements between MTurk and Blindspot")
        out += [f"FAILED: {e}" for e in self.errors]
        return out


def study_sync(*, study: Study, client: BaseClient | None = None) -> SyncReport:
    """Refresh every HIT of the study (this mode) and upsert its assignments; keep going on a
    failing HIT and report it."""
    client = client or get_client()
    sandbox = is_sandbox()
    report = SyncReport()
    for hit in Hit.objects.filter(study=study, sandbox=sandbox).published().order_by("index"):
        try:
            _sync_hit(client, hit, report)
        except MTurkError as exc:
            report.errors.append(f"HIT {hit.hit_id}: {exc}")
    rows = HitAssignment.objects.filter(hit__study=study, hit__sandbox=sandbox)
    report.by_state = Counter(rows.values_list("mturk_status", flat=True))
    report.problems = study_problems(study=study, sandbox=sandbox)
    return report


def _sync_hit(client: BaseClient, hit: Hit, report: SyncReport) -> None:
    asked = timezone.now()  # leases taken after this may be missing from MTurk's counts
    info = call(client, "get_hit", study=hit.study, HITId=hit.hit_id)["HIT"]
    hit.status = info.get("HITStatus", hit.status)
    hit.expiration = info.get("Expiration", hit.expiration)
    hit.max_assignments = info.get("MaxAssignments", hit.max_assignments)
    report.hits.append(
        {
            "hit_id": hit.hit_id,
            "status": hit.status,
            "max": hit.max_assignments,
            "available": info.get("NumberOfAssignmentsAvailable", 0),
            "pending": info.get("NumberOfAssignmentsPending", 0),
            "completed": info.get("NumberOfAssignmentsCompleted", 0),
        }
    )
    listed: dict[str, str] = {}  # assignment id → the worker MTurk lists it for
    gone: dict[tuple[str, str], str] = {}  # (assignment id, worker id) → Returned or Abandoned
    for page in pages(
        client,
        "list_assignments_for_hit",
        study=hit.study,
        HITId=hit.hit_id,
        AssignmentStatuses=STATUSES,
    ):
        for assignment in page.get("Assignments", []):
            report.listed += 1
            if assignment.get("AssignmentStatus") in GONE:
                key = (assignment["AssignmentId"], assignment["WorkerId"])
                gone[key] = assignment["AssignmentStatus"]
                continue
            listed[assignment["AssignmentId"]] = assignment["WorkerId"]
            if _upsert(hit, assignment):
                report.created += 1
            else:
                report.updated += 1
    in_progress = info.get("NumberOfAssignmentsPending")
    report.released += _free_returned(hit, listed, gone, in_progress=in_progress, asked=asked)
    hit.synced = timezone.now()
    hit.save(update_fields=["status", "expiration", "max_assignments", "synced"])


def _free_returned(
    hit: Hit,
    listed: dict[str, str],
    gone: dict[tuple[str, str], str],
    *,
    in_progress: int | None,
    asked: dt.datetime,
) -> list[str]:
    """Free the active leases of this HIT's assignments that MTurk no longer holds for their
    worker; one line each. MTurk lists only submitted work, so an accepted assignment missing
    from the list is gone only when that is certain: MTurk says so (``gone``), its id now belongs
    to another worker (ids are reused after a return), the HIT has no assignment in progress,
    or its time ran out."""
    rows = HitAssignment.objects.filter(
        hit=hit,
        mturk_status=Status.ACCEPTED,
        lease__status=Lease.Status.ACTIVE,
        lease__leased__lt=asked,
    ).select_related("lease__study", "lease__assignment")
    out = []
    for row in rows:
        if listed.get(row.assignment_id) == row.worker_id:
            continue
        lease = row.lease
        if lease is None:  # excluded by the filter; keeps the type checker informed
            continue
        deadline = lease.deadline or (
            row.accepted + dt.timedelta(seconds=hit.duration_seconds) if row.accepted else None
        )
        if (row.assignment_id, row.worker_id) in gone:
            why = f"MTurk lists it {gone[(row.assignment_id, row.worker_id)]}"
        elif row.assignment_id in listed:
            why = "its assignment id now belongs to another worker"
        elif in_progress == 0:
            why = "MTurk has no assignment of the HIT in progress"
        elif deadline is not None and asked >= deadline:
            why = "MTurk's time for it ran out"
        else:
            continue  # perhaps still at work: MTurk does not say which of its accepted ones
        if lease_release(lease, reason=f"mturk: assignment returned or abandoned ({why})"):
            row.accepted = None  # a re-accept starts MTurk's clock again
            row.save(update_fields=["accepted", "updated"])
            out.append(
                f"freed lease of assignment {row.assignment_id} worker {row.worker_id}: "
                f"returned or abandoned on MTurk ({why})"
            )
    return out


@transaction.atomic
def _upsert(hit: Hit, a: dict[str, Any]) -> bool:
    """Merge one MTurk assignment into its row (keyed on assignment and worker); True if new."""
    row, created = HitAssignment.objects.select_for_update().get_or_create(
        assignment_id=a["AssignmentId"],
        worker_id=a["WorkerId"],
        defaults={"hit": hit, "lease": _lease_for(hit.study, a)},
    )
    row.mturk_status = a.get("AssignmentStatus", row.mturk_status)
    row.accepted = row.accepted or a.get("AcceptTime")
    row.submitted = a.get("SubmitTime") or row.submitted
    row.reviewed = a.get("ApprovalTime") or a.get("RejectionTime") or row.reviewed
    if a.get("RequesterFeedback") and not row.feedback:
        row.feedback = a["RequesterFeedback"][:1024]
    if row.lease is None:
        row.lease = _lease_for(hit.study, a)
    row.save()
    return created


def _lease_for(study: Study, a: dict[str, Any]) -> Lease | None:
    """The lease the worker page bound to this MTurk assignment, if exactly one matches."""
    leases = list(
        Lease.objects.filter(
            study=study, provider_ref=a["AssignmentId"], worker__external_id=a["WorkerId"]
        ).order_by("-leased")[:2]
    )
    return leases[0] if len(leases) == 1 else None
