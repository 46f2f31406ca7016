"""Saving a worker's answers and accepting their submission: once, checked, idempotent.

Every answer list is checked whole against the lease's own items before anything is written;
a submit moves the lease from active to submitted by compare-and-set, and a replay (the same
answers again, or none) gets the same completion code without writing anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotate import errors
from annotate.labels import LABELS
from annotate.models import Answer, Event, Item, Lease
from annotate.work.leases import lease_ensure_current, lease_expiry

MAX_RESPONSE_MS = 3_600_000
SUBMITTED_ALREADY = "This task was already submitted; its answers can no longer change."


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
        elif not isinstance(label, str) or label not in LABELS:
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
        raise errors.AlreadySubmitted(SUBMITTED_ALREADY)
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

    Each save moves the expiry to ``lease_seconds`` from now, so only abandoned leases expire,
    but never past the recruiting site's deadline for the attempt.
    """
    now = now or timezone.now()
    lease_ensure_current(lease, now)
    if lease.status == Lease.Status.SUBMITTED:
        raise errors.AlreadySubmitted(SUBMITTED_ALREADY)
    rows = _validate(lease, answers, allow_clear=True)
    with transaction.atomic():
        lease = _live(lease)
        _write(lease, rows)
        expires = lease_expiry(lease.study, now, lease.deadline)
        Lease.objects.filter(pk=lease.pk).update(expires=max(expires, lease.expires))
        answered = lease.answers.count()
        Event.objects.record(Event.Kind.SAVED, study=lease.study, lease=lease, count=len(rows))
    return answered


def lease_submit(*, lease: Lease, answers: Any = None, now: dt.datetime | None = None) -> str:
    """Store the final answer set once and return the completion code (idempotent replays).

    ``answers`` (optional) are saved first under the same checks; then every item must have
    exactly one answer, and a compare-and-set moves the lease from active to submitted.
    """
    now = now or timezone.now()
    if lease.status == Lease.Status.SUBMITTED:
        return _replay(lease, answers)
    lease_ensure_current(lease, now)
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
                raise errors.AlreadySubmitted(SUBMITTED_ALREADY)
            Event.objects.record(
                Event.Kind.SUBMITTED, study=fresh.study, lease=fresh, answers=total
            )
    except errors.AlreadySubmitted:
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
    raise errors.AlreadySubmitted()
