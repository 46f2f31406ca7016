"""Leasing assignments to workers: who may take which assignment, for how long.

Safety rests on the database: at most one live (active or submitted) lease per assignment and
distinct slots below the study's limit for a worker's live leases (partial unique constraints
on :class:`~annotate.models.Lease`). PostgreSQL picks a free assignment with
``SELECT … FOR UPDATE SKIP LOCKED`` so concurrent workers do not queue on the same row; other
databases (SQLite) try candidates in turn and let the constraints reject a lost race. Both
paths retry on ``IntegrityError``, so neither can hand one assignment to two workers.
"""

from __future__ import annotations

import datetime as dt
import hmac
import random
import re

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotate import errors
from annotate.models import LIVE, Assignment, Event, Item, Lease, Study, Worker, opaque_key
from annotate.work.tokens import lease_key_from_token

WORKER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,100}$")
ATTEMPT = re.compile(r"^[A-Za-z0-9._:@-]{0,100}$")  # a provider's attempt id, or a page's nonce
ATTEMPTS = 20  # lost races before giving up (each loss means someone else got a lease)
SPREAD = 8  # the fallback tries one of the first SPREAD candidates first, to avoid a stampede


def study_for_key(key: str) -> Study:
    """The open study behind a worker link."""
    study = Study.objects.filter(key=key).first()
    if study is None:
        raise errors.StudyNotFound()
    if study.status != Study.Status.OPEN:
        raise errors.StudyClosed()
    return study


def _worker(worker_id: str | None, source: str = Worker.Source.PANEL) -> Worker:
    """The panel's worker (created on first sight, from ``source``), or a fresh anonymous one."""
    if not worker_id:
        return Worker.objects.create(
            external_id=f"anon-{opaque_key()}", source=Worker.Source.ANONYMOUS
        )
    if not WORKER_ID.match(worker_id):
        raise errors.InvalidSubmission(
            "The worker id must be 1–100 letters, digits or . _ : @ - characters."
        )
    try:
        worker, _ = Worker.objects.get_or_create(external_id=worker_id, defaults={"source": source})
    except IntegrityError:  # created concurrently by the same person's other request
        worker = Worker.objects.get(external_id=worker_id)
    return worker


def _expire(lease: Lease, now: dt.datetime) -> bool:
    """Compare-and-set one overdue active lease to expired; True if this call did it.

    The condition repeats ``expires <= now`` so a lease a save has just extended survives.
    """
    with transaction.atomic():
        done = Lease.objects.filter(
            pk=lease.pk, status=Lease.Status.ACTIVE, expires__lte=now
        ).update(status=Lease.Status.EXPIRED)
        if done:
            lease.status = Lease.Status.EXPIRED
            index = lease.assignment.index
            Event.objects.record(
                Event.Kind.EXPIRED, study=lease.study, lease=lease, assignment=index
            )
    return bool(done)


def leases_expire(*, study: Study | None = None, now: dt.datetime | None = None) -> int:
    """Return every overdue active lease (of ``study``, or all) to the pool; how many."""
    now = now or timezone.now()
    overdue = Lease.objects.filter(status=Lease.Status.ACTIVE, expires__lte=now)
    if study is not None:
        overdue = overdue.filter(study=study)
    leases = overdue.select_related("study", "assignment", "worker")
    return sum(_expire(lease, now) for lease in leases)


def has_open_assignment(study: Study) -> bool:
    """Whether some assignment of the study is held by no live lease (read-only: an overdue
    active lease counts as free, as the next lease request will find it)."""
    live = Q(status=Lease.Status.SUBMITTED) | Q(
        status=Lease.Status.ACTIVE, expires__gt=timezone.now()
    )
    held = Lease.objects.filter(live, study=study).values("assignment")
    return Assignment.objects.filter(study=study).exclude(pk__in=held).exists()


def _candidates(study: Study, worker: Worker):
    """Assignments nobody holds, minus any sharing a source image with one this worker had."""
    free = Assignment.objects.filter(study=study).exclude(leases__status__in=LIVE)
    seen = Item.objects.filter(
        assignment__leases__study=study,
        assignment__leases__worker=worker,
        is_attention=False,
    ).values("stimulus__source_index")
    if Lease.objects.filter(study=study, worker=worker).exists():
        overlapping = Item.objects.filter(
            assignment__study=study, is_attention=False, stimulus__source_index__in=seen
        ).values("assignment")
        free = free.exclude(pk__in=overlapping)
    return free.order_by("replicate", "index")


def lease_expiry(study: Study, now: dt.datetime, deadline: dt.datetime | None) -> dt.datetime:
    """When a lease taken or saved at ``now`` expires: ``lease_seconds`` on, never past the
    recruiting site's ``deadline`` (its clock runs from accept and no save of ours moves it)."""
    expires = now + dt.timedelta(seconds=study.lease_seconds)
    return min(expires, deadline) if deadline is not None else expires


def lease_release(lease: Lease, *, reason: str, now: dt.datetime | None = None) -> bool:
    """Free an active lease's assignment at once (the worker returned it or the site timed it
    out); True if this call did it. Submitted work is never released."""
    now = now or timezone.now()
    with transaction.atomic():
        done = Lease.objects.filter(pk=lease.pk, status=Lease.Status.ACTIVE).update(
            status=Lease.Status.EXPIRED, expires=now
        )
        if done:
            lease.status, lease.expires = Lease.Status.EXPIRED, now
            Event.objects.record(
                Event.Kind.EXPIRED,
                study=lease.study,
                lease=lease,
                assignment=lease.assignment.index,
                reason=reason,
            )
    return bool(done)


def use_skip_locked() -> bool:
    """Whether this database can skip rows locked by concurrent lessees (PostgreSQL)."""
    return connection.features.has_select_for_update_skip_locked


def lease_acquire(
    *,
    study: Study,
    worker_id: str | None,
    attempt: str = "",
    provider_ref: str = "",
    source: str = Worker.Source.PANEL,
    deadline: dt.datetime | None = None,
    now: dt.datetime | None = None,
    skip_locked: bool | None = None,
) -> Lease:
    """Give the worker an assignment for ``study.lease_seconds``, or their active one back.

    A lease belongs to the client that took it: ``attempt`` is that client's proof (the
    recruiting site's id of this attempt, or a nonce from the entry page the browser holds),
    and only the same ``attempt`` gets an active lease back. A bare worker id never does — a
    panel id is an identifier, not a secret — so a second client is refused with
    :class:`~annotate.errors.LeaseHeldElsewhere`, which says how to continue.
    ``provider_ref`` is the site's attempt id kept for reconciliation; ``deadline`` the site's
    own time limit for the attempt, which the lease never outlives. ``skip_locked`` forces a
    path (None: SKIP LOCKED where the database has it); tests force the constraint-only
    fallback on PostgreSQL too.
    """
    for label, value in (("attempt id", attempt), ("assignment id", provider_ref)):
        if not ATTEMPT.match(value):
            raise errors.InvalidSubmission(
                f"The {label} must be up to 100 letters, digits or . _ : @ - characters."
            )
    now = now or timezone.now()
    skip_locked = use_skip_locked() if skip_locked is None else skip_locked
    worker = _worker(worker_id, source)
    leases_expire(study=study, now=now)
    limit = study.assignments_per_worker
    for _ in range(ATTEMPTS):
        # One read of the worker's live leases, so "active" and "slots used" agree.
        live = list(
            Lease.objects.filter(study=study, worker=worker, status__in=LIVE).select_related(
                "study", "worker", "assignment"
            )
        )
        active = [lease for lease in live if lease.status == Lease.Status.ACTIVE]
        if active:
            return _resumed(active[0], attempt)
        used = {lease.slot for lease in live}
        if len(used) >= limit:
            raise errors.AlreadyParticipated()
        slot = min(set(range(limit)) - used)
        fields = dict(
            study=study,
            worker=worker,
            slot=slot,
            leased=now,
            expires=lease_expiry(study, now, deadline),
            deadline=deadline,
            provider_ref=provider_ref,
            attempt=attempt,
        )
        try:
            if skip_locked:
                lease = _acquire_skip_locked(study, worker, fields)
            else:
                lease = _acquire_fallback(study, worker, fields)
        except IntegrityError:
            continue  # a lost race on the assignment or on the worker's slot: look again
        if lease is None:
            if worker.source == Worker.Source.ANONYMOUS:
                worker.delete()  # made for this request only: leave no unused row behind
            raise errors.StudyFull()
        Event.objects.record(
            Event.Kind.LEASED, study=study, lease=lease, assignment=lease.assignment.index
        )
        return lease
    raise errors.StudyFull("Too many people are starting at once; please try again in a moment.")


def _resumed(lease: Lease, attempt: str) -> Lease:
    """The worker's active lease, for the client that holds its proof; refused otherwise."""
    if attempt and lease.attempt and hmac.compare_digest(attempt, lease.attempt):
        return lease
    raise errors.LeaseHeldElsewhere.until(lease.expires)


def _acquire_skip_locked(study: Study, worker: Worker, fields: dict) -> Lease | None:
    with transaction.atomic():
        assignment = (
            _candidates(study, worker).select_for_update(skip_locked=True, of=("self",)).first()
        )
        if assignment is None:
            return None
        return Lease.objects.create(assignment=assignment, **fields)


def _acquire_fallback(study: Study, worker: Worker, fields: dict) -> Lease | None:
    """Insert a lease for one candidate after another until the constraints accept one.

    An IntegrityError on the worker's slot (the same worker racing itself) propagates so the
    caller re-checks the limit; one on the assignment moves on to the next candidate.
    """
    ids = list(_candidates(study, worker).values_list("pk", flat=True)[:200])
    if not ids:
        return None
    head = ids[:SPREAD]
    random.shuffle(head)
    for pk in head + ids[SPREAD:]:
        try:
            with transaction.atomic():
                return Lease.objects.create(assignment_id=pk, **fields)
        except IntegrityError:
            mine = Lease.objects.filter(study=study, worker=worker)
            if (
                mine.filter(slot=fields["slot"], status__in=LIVE).exists()
                or mine.filter(status=Lease.Status.ACTIVE).exists()
            ):
                raise
    raise IntegrityError("every candidate was taken concurrently")


def lease_from_token(token: str, *, current: bool = True, now: dt.datetime | None = None) -> Lease:
    """The lease a worker's token names (a read: nothing is written). Forged → InvalidToken.

    With ``current`` (pages and reads), an expired lease, or an active one past its expiry, is
    refused with LeaseExpired; a submitted lease is returned (its page, its code). Writes pass
    ``current=False`` and leave the check to the service, which records the expiry.
    """
    key = lease_key_from_token(token)
    lease = Lease.objects.select_related("study", "assignment", "worker").filter(key=key).first()
    if lease is None:
        raise errors.InvalidToken()
    now = now or timezone.now()
    if current and (
        lease.status == Lease.Status.EXPIRED
        or (lease.status == Lease.Status.ACTIVE and lease.expires <= now)
    ):
        raise errors.LeaseExpired()
    return lease


def lease_ensure_current(lease: Lease, now: dt.datetime) -> None:
    """Before a write: expire an overdue active lease for good, then refuse an expired one."""
    if lease.status == Lease.Status.ACTIVE and lease.expires <= now and not _expire(lease, now):
        lease.refresh_from_db(fields=["status", "expires"])  # extended or expired meanwhile
    if lease.status == Lease.Status.EXPIRED:
        raise errors.LeaseExpired()
