"""``mturk sync``: MTurk's view of a study's HITs and assignments, merged into ours, and what
disagrees.

Our database is the truth about work; ``HitAssignment.mturk_status`` is MTurk's truth about
payment. Nothing is ever dropped: an assignment MTurk lists that we never saw is kept (with no
lease) and reported, and so is work submitted here that MTurk never received (a lost
externalSubmit, psiTurk #390).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient
from django.db import transaction
from django.utils import timezone

from annotate.models import Lease, Study
from annotate.mturk.client import MTurkError, call, get_client, is_sandbox, pages
from annotate.mturk.models import Hit, HitAssignment

STATUSES = ["Submitted", "Approved", "Rejected"]  # all ListAssignmentsForHIT can return
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
            out.append(
                f"submitted here, not on MTurk: assignment {row.assignment_id} worker "
                f"{row.worker_id} (HIT {row.hit.hit_id}, completion code "
                f"{row.lease.completion_code}) — MTurk never got the submit; ask the worker to "
                "submit the HIT on MTurk while it is open (the code is on their page), or pay "
                "them with `mturk bonus` on another of their assignments or a compensation HIT "
                "(docs/mturk.md)"
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
    for hit in Hit.objects.filter(study=study, sandbox=sandbox).order_by("index"):
        try:
            _sync_hit(client, hit, report)
        except MTurkError as exc:
            report.errors.append(f"HIT {hit.hit_id}: {exc}")
    rows = HitAssignment.objects.filter(hit__study=study, hit__sandbox=sandbox)
    report.by_state = Counter(rows.values_list("mturk_status", flat=True))
    report.problems = study_problems(study=study, sandbox=sandbox)
    return report


def _sync_hit(client: BaseClient, hit: Hit, report: SyncReport) -> None:
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
    for page in pages(
        client,
        "list_assignments_for_hit",
        study=hit.study,
        HITId=hit.hit_id,
        AssignmentStatuses=STATUSES,
    ):
        for assignment in page.get("Assignments", []):
            report.listed += 1
            if _upsert(hit, assignment):
                report.created += 1
            else:
                report.updated += 1
    hit.synced = timezone.now()
    hit.save(update_fields=["status", "expiration", "max_assignments", "synced"])


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
