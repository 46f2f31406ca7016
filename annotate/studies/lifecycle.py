"""A study's life after creation: open it to workers, close it, hand out its link."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from annotate.errors import StudyError
from annotate.models import Event, Study


def _status_change(*, study: Study, allowed: tuple[str, ...], to: str, event: str) -> Study:
    with transaction.atomic():
        row = Study.objects.select_for_update().get(pk=study.pk)
        if row.status not in allowed:
            raise StudyError(f"study {row.name} is {row.status}; cannot make it {to}")
        now, before = timezone.now(), row.status
        row.status = to
        stamp = "opened" if to == Study.Status.OPEN else "closed"
        setattr(row, stamp, now)
        row.save(update_fields=["status", stamp])
        Event.objects.create(study=row, kind=event, data={"from": before, "to": to})
    for field in ("status", "opened", "closed"):
        setattr(study, field, getattr(row, field))
    return row


def study_open(*, study: Study) -> Study:
    """Open a draft or closed study to workers (records an ``opened`` event)."""
    return _status_change(
        study=study,
        allowed=(Study.Status.DRAFT, Study.Status.CLOSED),
        to=Study.Status.OPEN,
        event=Event.Kind.OPENED,
    )


def study_close(*, study: Study) -> Study:
    """Stop giving out an open study's assignments (records a ``closed`` event)."""
    return _status_change(
        study=study, allowed=(Study.Status.OPEN,), to=Study.Status.CLOSED, event=Event.Kind.CLOSED
    )


def study_link(
    study: Study, *, request: HttpRequest | None = None, base_url: str | None = None
) -> str:
    """The worker entry URL: absolute from ``request`` or ``base_url``, else a path."""
    path = reverse("annotate:study-entry", kwargs={"study_key": study.key})
    if request is not None:
        return request.build_absolute_uri(path)
    if base_url:
        return base_url.rstrip("/") + path
    return path
