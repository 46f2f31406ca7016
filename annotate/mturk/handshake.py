"""The MTurk worker handshake: preview, accept, resume, and where to post the finished work.

MTurk frames our study page with ``assignmentId``, ``hitId``, ``workerId`` and ``turkSubmitTo``.
An accepted assignment is keyed on (assignment id, worker id), since MTurk reuses assignment ids
after a return; the key binds one Blindspot lease, so a reload, or a return and re-accept of the
same HIT, gives the same 25 images. A second HIT of the same study is refused while the first
is live, and with ``exclude_previous_workers`` anyone who submitted work in another study is
refused too (our own check: MTurk's qualification grant is not instant). The lease never
outlives MTurk's clock: its deadline is the accept time plus the HIT's assignment duration.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotate import errors
from annotate.models import LIVE, Lease, Study
from annotate.mturk.client import MTurkError, call, endpoint_url, get_client, is_local_endpoint
from annotate.mturk.models import Hit, HitAssignment
from annotate.mturk.publish import PROVIDER, record_hit
from annotate.work.leases import lease_acquire

logger = logging.getLogger(__name__)

PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
SANDBOX_SUBMIT = "https://workersandbox.mturk.com"
LIVE_SUBMIT = "https://www.mturk.com"
# The sites that frame an ExternalQuestion, and the only hosts we post finished work to.
FRAME_ANCESTORS = (
    "https://worker.mturk.com",
    "https://workersandbox.mturk.com",
    "https://www.mturk.com",
)
SUBMIT_HOSTS = frozenset({SANDBOX_SUBMIT, LIVE_SUBMIT, "https://worker.mturk.com"})


class UnknownHit(errors.WorkError):
    code, status = "unknown_hit", 404
    message = "This task does not belong to this study. Please return it."


class MTurkTimeUp(errors.LeaseExpired):
    message = "Your time for this task on Mechanical Turk has run out. Please return it; thank you!"


class OtherHitActive(errors.AlreadyParticipated):
    message = (
        "You already accepted another task of this study; each person may do one. "
        "Please return this task and finish the other one."
    )


class PreviousParticipant(errors.AlreadyParticipated):
    message = (
        "You took part in an earlier study of ours, so you cannot take this one. "
        "Thank you! Please return this task."
    )


@dataclass(frozen=True)
class Accept:
    """What MTurk passed to the page for an accepted (or previewed) assignment."""

    assignment_id: str
    hit_id: str
    worker_id: str
    turk_submit_to: str = ""

    @property
    def preview(self) -> bool:
        return self.assignment_id == PREVIEW or not self.worker_id

    @property
    def complete(self) -> bool:
        return bool(self.assignment_id and self.hit_id and self.worker_id) and not self.preview


def submit_host(value: str, *, sandbox: bool) -> str:
    """The MTurk host to post finished work to: ``turkSubmitTo`` when it is one of MTurk's own
    worker sites (or the local trial endpoint), else the mode's site (MTurk sometimes omits it;
    anything else is refused)."""
    parts = urlsplit(value.strip())
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    allowed = set(SUBMIT_HOSTS)
    if is_local_endpoint():  # a trial against `manage.py mturk_endpoint` on this machine
        local = urlsplit(endpoint_url())
        allowed.add(f"{local.scheme}://{local.netloc}")
    if origin in allowed and parts.path in ("", "/"):
        return origin
    return SANDBOX_SUBMIT if sandbox else LIVE_SUBMIT


def bound_lease(study: Study, accept: Accept) -> Lease | None:
    """The live lease this (assignment id, worker id) holds in ``study``, if it accepted before."""
    row = (
        HitAssignment.objects.select_related("lease__study")
        .filter(hit__study=study, assignment_id=accept.assignment_id, worker_id=accept.worker_id)
        .first()
    )
    if row is not None and row.lease is not None and row.lease.status in LIVE:
        return row.lease
    return None


def _previous_work(study: Study, worker_id: str) -> QuerySet[Lease]:
    return Lease.objects.filter(
        worker__external_id=worker_id, status=Lease.Status.SUBMITTED
    ).exclude(study=study)


def accept_lease(*, study: Study, accept: Accept) -> Lease:
    """Lease (or resume) the Blindspot assignment for an accepted MTurk assignment.

    Raises a WorkError (shown as a friendly page) for an unknown HIT, a second HIT of the
    study, a previous participant, a full study or a closed one.
    """
    if not accept.complete:
        raise errors.InvalidSubmission("Please accept the task on MTurk first.")
    hit = Hit.objects.filter(study=study, hit_id=accept.hit_id).first() or _adopt_pending(
        study, accept.hit_id
    )
    if hit is None:
        raise UnknownHit()
    if (lease := bound_lease(study, accept)) is not None:
        return lease
    others = HitAssignment.objects.filter(
        hit__study=study, worker_id=accept.worker_id, lease__status__in=LIVE
    ).exclude(hit=hit)
    if others.exists():
        raise OtherHitActive()
    if (
        study.provider_options.get("exclude_previous_workers")
        and _previous_work(study, accept.worker_id).exists()
    ):
        raise PreviousParticipant()
    now = timezone.now()
    accepted = accepted_at(accept, now=now)
    deadline = accepted + dt.timedelta(seconds=hit.duration_seconds)
    if deadline <= now:
        raise MTurkTimeUp()
    lease = lease_acquire(
        study=study,
        worker_id=accept.worker_id,
        attempt=accept.assignment_id,
        provider_ref=accept.assignment_id,
        source=PROVIDER,
        deadline=deadline,
        now=now,
    )
    _bind(hit, accept, lease, accepted=accepted)
    return lease


def _adopt_pending(study: Study, hit_id: str) -> Hit | None:
    """The study's pending HIT that MTurk created although we never heard its answer (a worker
    found it first): asked of MTurk (``GetHIT``), matched by annotation and recorded; or None."""
    pending = {h.annotation: h for h in Hit.objects.filter(study=study).pending()}
    if not pending:
        return None
    try:
        info = call(get_client(interactive=True), "get_hit", study=study, HITId=hit_id)["HIT"]
    except MTurkError:
        return None
    row = pending.get(info.get("RequesterAnnotation") or "")
    if row is not None:
        record_hit(row, info)
    return row


def accepted_at(accept: Accept, *, now: dt.datetime) -> dt.datetime:
    """When the worker accepted on MTurk, as far as we know: the assignment's ``accepted`` time
    (MTurk's AcceptTime once synced), else now — MTurk's clock started no later than that."""
    row = HitAssignment.objects.filter(
        assignment_id=accept.assignment_id, worker_id=accept.worker_id
    ).first()
    return row.accepted if row is not None and row.accepted is not None else now


def _bind(hit: Hit, accept: Accept, lease: Lease, *, accepted: dt.datetime) -> None:
    """Record (assignment id, worker id) → lease; a re-accept moves the lease's MTurk reference."""
    host = submit_host(accept.turk_submit_to, sandbox=hit.sandbox)
    defaults = {"hit": hit, "lease": lease, "turk_submit_to": host, "accepted": accepted}
    try:
        with transaction.atomic():
            row, created = HitAssignment.objects.update_or_create(
                assignment_id=accept.assignment_id,
                worker_id=accept.worker_id,
                defaults=defaults,
            )
    except IntegrityError:  # the same worker's other request bound it a moment ago
        row = HitAssignment.objects.get(
            assignment_id=accept.assignment_id, worker_id=accept.worker_id
        )
    if lease.provider_ref != accept.assignment_id:
        Lease.objects.filter(pk=lease.pk).update(provider_ref=accept.assignment_id)
        lease.provider_ref = accept.assignment_id
    logger.info("mturk %s: %s bound to lease %s", row.assignment_id, row.worker_id, lease.pk)


def external_submit(lease: Lease) -> dict[str, str] | None:
    """The form that hands a submitted lease back to MTurk: its action and fields (None when the
    lease did not come from MTurk). The completion code travels as the answer field."""
    row = (
        HitAssignment.objects.select_related("hit")
        .filter(lease=lease)
        .order_by("-updated", "-id")
        .first()
    )
    if row is None:
        return None
    host = submit_host(row.turk_submit_to, sandbox=row.hit.sandbox)
    return {
        "action": f"{host}/mturk/externalSubmit",
        "origin": host,
        "assignment_id": row.assignment_id,
        "completion_code": lease.completion_code,
    }
