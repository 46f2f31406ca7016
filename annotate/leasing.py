"""Leasing assignments to workers, saving their answers and accepting their submission.

Safety rests on the database: at most one live (active or submitted) lease per assignment and
distinct slots below the study's limit for a worker's live leases (partial unique constraints
on :class:`~annotate.models.Lease`). PostgreSQL picks a free assignment with
``SELECT … FOR UPDATE SKIP LOCKED`` so concurrent workers do not queue on the same row; other
databases (SQLite) try candidates in turn and let the constraints reject a lost race. Both
paths retry on ``IntegrityError``, so neither can hand one assignment to two workers.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import random
import re
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from annotate import errors
from annotate.models import (
    Answer,
    Assignment,
    Event,
    Item,
    Lease,
    Study,
    Worker,
    opaque_key,
)
from annotate.tokens import lease_key_from_token

logger = logging.getLogger(__name__)
LIVE = (Lease.Status.ACTIVE, Lease.Status.SUBMITTED)
WORKER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,100}$")
MAX_RESPONSE_MS = 3_600_000
ATTEMPTS = 20  # lost races before giving up (each loss means someone else got a lease)
SPREAD = 8  # the fallback tries one of the first SPREAD candidates first, to avoid a stampede


SUBMITTED_ALREADY = "This task was already submitted; its answers can no longer change."


class AlreadySubmitted(errors.WorkError):
    """A change to a submitted lease: its one answer set is final (409)."""

    code, status = "already_submitted", 409
    message = "This task was already submitted with other answers; nothing was changed."


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


def _log(kind: str, *, study: Study, lease: Lease | None = None, **data: Any) -> None:
    """Append one event (the lease's worker, if any, is recorded with it)."""
    Event.objects.create(
        study=study, lease=lease, worker=lease.worker if lease else None, kind=kind, data=data
    )


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
            _log(Event.Kind.EXPIRED, study=lease.study, lease=lease, assignment=index)
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


def use_skip_locked() -> bool:
    """Whether this database can skip rows locked by concurrent lessees (PostgreSQL)."""
    return connection.features.has_select_for_update_skip_locked


def lease_acquire(
    *,
    study: Study,
    worker_id: str | None,
    provider_ref: str = "",
    source: str = Worker.Source.PANEL,
    now: dt.datetime | None = None,
    skip_locked: bool | None = None,
) -> Lease:
    """Give the worker an assignment (or their active one back) for ``study.lease_seconds``.

    ``skip_locked`` forces a path (None: SKIP LOCKED where the database has it); tests force the
    constraint-only fallback on PostgreSQL too.
    """
    now = now or timezone.now()
    skip_locked = use_skip_locked() if skip_locked is None else skip_locked
    worker = _worker(worker_id, source)
    leases_expire(study=study, now=now)
    limit = study.assignments_per_worker
    for _ in range(ATTEMPTS):
        active = Lease.objects.filter(study=study, worker=worker, status=Lease.Status.ACTIVE)
        if (lease := active.select_related("study", "worker", "assignment").first()) is not None:
            return lease
        used = set(
            Lease.objects.filter(study=study, worker=worker, status__in=LIVE).values_list(
                "slot", flat=True
            )
        )
        if len(used) >= limit:
            raise errors.AlreadyParticipated()
        slot = min(set(range(limit)) - used)
        fields = dict(
            study=study,
            worker=worker,
            slot=slot,
            leased=now,
            expires=now + dt.timedelta(seconds=study.lease_seconds),
            provider_ref=provider_ref[:100],
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
        _log(Event.Kind.LEASED, study=study, lease=lease, assignment=lease.assignment.index)
        return lease
    raise errors.StudyFull("Too many people are starting at once; please try again in a moment.")


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


def lease_from_token(
    token: str, *, for_update: bool = False, now: dt.datetime | None = None
) -> Lease:
    """The lease a worker's token names; forged → InvalidToken, overdue → LeaseExpired.

    A submitted lease is returned (for read-only use: its page, its code). ``for_update`` locks
    the row until the caller's transaction ends (PostgreSQL; the caller must be atomic).
    """
    key = lease_key_from_token(token)
    leases = Lease.objects.select_related("study", "assignment", "worker")
    if for_update:
        leases = leases.select_for_update(of=("self",))
    lease = leases.filter(key=key).first()
    if lease is None:
        raise errors.InvalidToken()
    _ensure_current(lease, now or timezone.now())
    return lease


def _ensure_current(lease: Lease, now: dt.datetime) -> None:
    """Expire an overdue active lease for good, then refuse an expired one."""
    if lease.status == Lease.Status.ACTIVE and lease.expires <= now and not _expire(lease, now):
        lease.refresh_from_db(fields=["status", "expires"])  # extended or expired meanwhile
    if lease.status == Lease.Status.EXPIRED:
        raise errors.LeaseExpired()


def lease_payload(lease: Lease) -> dict[str, Any]:
    """What the labeling page needs, and nothing else: opaque item keys and the pixels.

    Images travel inline as data: URIs, so a task loads in one request (phones, flaky
    networks, third-party frames) and no image URL or file name ever reaches a worker.
    """
    items = list(
        lease.assignment.items.order_by("position")
        .select_related("stimulus")
        .only("key", "position", "stimulus__image")
    )
    answers = {
        key: {"label": label, "ms": ms}
        for key, label, ms in lease.answers.values_list("item__key", "label", "response_ms")
    }
    images = [image_data_uri(item.stimulus.image) for item in items]
    _log(Event.Kind.SERVED, study=lease.study, lease=lease)
    return {
        "items": [
            {"key": item.key, "position": item.position, "image": image}
            for item, image in zip(items, images, strict=True)
        ],
        "answers": answers,
        "total": len(items),
        "answered": len(answers),
        "expires": lease.expires.isoformat(),
        "status": lease.status,
        "completion_code": lease.completion_code
        if lease.status == Lease.Status.SUBMITTED
        else None,
    }


def _validate(
    lease: Lease, answers: Any, *, allow_clear: bool = False
) -> list[tuple[Item, str | None, int | None]]:
    """Check a whole answer list against the lease's items before anything is written.

    With ``allow_clear`` (autosave), label None clears a box the worker emptied.
    """
    if not isinstance(answers, list):
        raise errors.InvalidSubmission("'answers' must be a list of {item, label, ms} objects.")
    items = {item.key: item for item in lease.assignment.items.all()}
    if len(answers) > len(items):
        raise errors.InvalidSubmission(
            f"{len(answers)} answers were sent for a task of {len(items)} images."
        )
    rows, seen = [], set()
    for n, entry in enumerate(answers, start=1):
        if not isinstance(entry, dict) or set(entry) - {"item", "label", "ms"}:
            raise errors.InvalidSubmission(f"Answer {n} must be an object with item, label, ms.")
        key, label, ms = entry.get("item"), entry.get("label"), entry.get("ms")
        if not isinstance(key, str) or key not in items:
            raise errors.InvalidSubmission(f"Answer {n} names an image that is not in this task.")
        if key in seen:
            raise errors.InvalidSubmission(f"Answer {n} repeats an image already answered.")
        if label is None and allow_clear:
            pass
        elif not isinstance(label, str) or label not in Answer.LABELS:
            raise errors.InvalidSubmission(f"Answer {n}: the label must be one digit 0–9 or ?.")
        if ms is not None and (
            isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_RESPONSE_MS
        ):
            raise errors.InvalidSubmission(
                f"Answer {n}: the response time must be whole milliseconds, 0 to 1 hour."
            )
        seen.add(key)
        rows.append((items[key], label, ms))
    return rows


def _live(lease: Lease) -> Lease:
    """Re-read ``lease`` with its row locked (PostgreSQL) and insist it is still active.

    Only the lease row is locked (``of=self``): locking the joined study row would serialise
    every save of a study, and block the study's lease inserts, which take a key-share lock.
    """
    fresh = (
        Lease.objects.select_for_update(of=("self",))
        .select_related("study", "assignment", "worker")
        .get(pk=lease.pk)
    )
    if fresh.status == Lease.Status.EXPIRED:
        raise errors.LeaseExpired()
    if fresh.status == Lease.Status.SUBMITTED:
        raise AlreadySubmitted(SUBMITTED_ALREADY)
    return fresh


def _write(lease: Lease, rows: Sequence[tuple[Item, str | None, int | None]]) -> None:
    cleared = [item.pk for item, label, _ in rows if label is None]
    if cleared:
        Answer.objects.filter(lease=lease, item_id__in=cleared).delete()
    Answer.objects.bulk_create(
        [
            Answer(lease=lease, item=item, label=label, response_ms=ms)
            for item, label, ms in rows
            if label is not None
        ],
        update_conflicts=True,
        unique_fields=["lease", "item"],
        update_fields=["label", "response_ms", "saved"],
    )


def answers_save(*, lease: Lease, answers: Any, now: dt.datetime | None = None) -> int:
    """Autosave some answers (all validated first); keeps an active lease alive. Answered count.

    Each save moves the expiry to ``lease_seconds`` from now, so only abandoned leases expire.
    """
    now = now or timezone.now()
    _ensure_current(lease, now)
    if lease.status == Lease.Status.SUBMITTED:
        raise AlreadySubmitted(SUBMITTED_ALREADY)
    rows = _validate(lease, answers, allow_clear=True)
    with transaction.atomic():
        lease = _live(lease)
        _write(lease, rows)
        expires = now + dt.timedelta(seconds=lease.study.lease_seconds)
        Lease.objects.filter(pk=lease.pk).update(expires=max(expires, lease.expires))
        answered = lease.answers.count()
        _log(Event.Kind.SAVED, study=lease.study, lease=lease, count=len(rows))
    return answered


def lease_submit(*, lease: Lease, answers: Any = None, now: dt.datetime | None = None) -> str:
    """Store the final answer set once and return the completion code (idempotent replays).

    ``answers`` (optional) are saved first under the same checks; then every item must have
    exactly one answer, and a compare-and-set moves the lease from active to submitted.
    """
    now = now or timezone.now()
    if lease.status == Lease.Status.SUBMITTED:
        return _replay(lease, answers)
    _ensure_current(lease, now)
    rows = _validate(lease, answers) if answers is not None else []
    try:
        with transaction.atomic():
            fresh = _live(lease)
            _write(fresh, rows)
            total = fresh.assignment.items.count()
            answered = fresh.answers.count()
            if answered != total:
                raise errors.InvalidSubmission(
                    f"{answered} of {total} images are answered; answer every image, then submit."
                )
            done = Lease.objects.filter(pk=fresh.pk, status=Lease.Status.ACTIVE).update(
                status=Lease.Status.SUBMITTED, submitted=now
            )
            if not done:  # changed since _live read it (no row locks on SQLite): roll back
                raise AlreadySubmitted(SUBMITTED_ALREADY)
            _log(Event.Kind.SUBMITTED, study=fresh.study, lease=fresh, answers=total)
    except AlreadySubmitted:
        return _replay(lease, answers)  # a concurrent submit won: same rules as a replay
    lease.status, lease.submitted = Lease.Status.SUBMITTED, now
    return lease.completion_code


def _replay(lease: Lease, answers: Any) -> str:
    """A repeated submit, which writes nothing: the same code, or AlreadySubmitted.

    No answers, or answers each equal to the stored one, get the code; a different label does not.
    """
    lease.refresh_from_db()
    if lease.status == Lease.Status.EXPIRED:  # lost to an expiry, not to a submit
        raise errors.LeaseExpired()
    if answers is None:
        return lease.completion_code
    rows = _validate(lease, answers)
    stored = dict(lease.answers.values_list("item_id", "label"))
    if all(stored.get(item.pk) == label for item, label, _ in rows):
        return lease.completion_code
    raise AlreadySubmitted()


class ImageUnavailable(errors.WorkError):
    """A stimulus file the storage cannot read: the server's fault, never the worker's (503)."""

    code, status = "unavailable", 503
    message = "An image of this task is unavailable; please tell us."


def image_data_uri(image: FieldFile) -> str:
    """The stored PNG, byte for byte, as a ``data:`` URI (read through the storage API)."""
    try:
        with image.open("rb") as fh:
            data = fh.read()
    except (OSError, BotoCoreError, ClientError):  # a missing file; a remote store refusing
        logger.error("image file %r is missing or unreadable", image.name)
        raise ImageUnavailable() from None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
