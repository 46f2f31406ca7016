"""Crowd work: workers, their leases on assignments, their answers and the event log."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from annotate.labels import LABELS
from annotate.models.keys import completion_code, opaque_key
from annotate.models.studies import Assignment, Item, Study
from annotate.providers.registry import worker_source_choices


class Worker(models.Model):
    """A person taking part, identified by the panel's id or an anonymous one.

    ``source`` says where the id comes from: a panel's link, nowhere (anonymous), or a
    recruitment provider (its name; the choices follow the installed providers).
    """

    class Source(models.TextChoices):
        PANEL = "panel", "recruiting panel"
        ANONYMOUS = "anonymous", "anonymous"

    external_id = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=20, choices=worker_source_choices, default=Source.PANEL)
    simulated = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return self.external_id


class LeaseStatus(models.TextChoices):
    ACTIVE = "active", "active"
    SUBMITTED = "submitted", "submitted"
    EXPIRED = "expired", "expired"


#: The statuses that hold an assignment (one live lease per assignment; a worker's live leases
#: count towards the study's limit). The constraints below and every query use this tuple.
LIVE = (LeaseStatus.ACTIVE, LeaseStatus.SUBMITTED)


class Lease(models.Model):
    """A worker's hold on an assignment: active until submitted, or expired after a timeout.

    Constraints make leasing safe without row locks: at most one live (active or submitted)
    lease per assignment, at most one active lease per worker and study, and a worker's live
    leases in a study occupy distinct slots below the study's limit (the service picks it).
    """

    Status = LeaseStatus
    LIVE = LIVE

    key = models.CharField(max_length=32, unique=True, default=opaque_key, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="leases")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="leases")
    worker = models.ForeignKey(Worker, on_delete=models.PROTECT, related_name="leases")
    slot = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    leased = models.DateTimeField()
    expires = models.DateTimeField()
    deadline = models.DateTimeField(
        null=True,
        blank=True,
        help_text="the recruiting site's own time limit for this attempt (MTurk's assignment "
        "duration, Prolific's maximum time): saves never extend the lease past it",
    )
    submitted = models.DateTimeField(null=True, blank=True)
    completion_code = models.CharField(max_length=16, default=completion_code, editable=False)
    provider_ref = models.CharField(
        max_length=100,
        blank=True,
        help_text="the provider's id of this attempt (MTurk's assignment, Prolific's session)",
    )
    attempt = models.CharField(
        max_length=100,
        blank=True,
        help_text="the taking client's proof: the provider's attempt id or the entry page's "
        "nonce; only it resumes the lease",
    )

    class Meta:
        ordering = ["-leased"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignment"],
                condition=Q(status__in=list(LIVE)),
                name="lease_one_live_per_assignment",
            ),
            models.UniqueConstraint(
                fields=["study", "worker"],
                condition=Q(status=LeaseStatus.ACTIVE),
                name="lease_one_active_per_worker",
            ),
            models.UniqueConstraint(
                fields=["study", "worker", "slot"],
                condition=Q(status__in=list(LIVE)),
                name="lease_worker_slot",
            ),
        ]
        indexes = [models.Index(fields=["study", "status", "expires"])]

    def __str__(self) -> str:
        return f"{self.assignment} → {self.worker} ({self.status})"


class Answer(models.Model):
    """A worker's label for one item of a lease: a digit 0–9 or '?' (cannot tell)."""

    LABELS = LABELS

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="answers")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="answers")
    label = models.CharField(max_length=1)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    saved = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["lease", "item__position"]
        constraints = [
            models.UniqueConstraint(fields=["lease", "item"], name="answer_unique_item"),
            models.CheckConstraint(condition=Q(label__in=list(LABELS)), name="answer_label_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.lease_id}:{self.item_id}={self.label}"


class EventManager(models.Manager["Event"]):
    """Table-level writes of the event log: it is only ever appended to."""

    def record(self, kind: str, *, study: Study, lease: Lease | None = None, **data: Any) -> Event:
        """Append one event; the lease's worker, if any, is recorded with it."""
        worker = lease.worker if lease is not None else None
        return self.create(study=study, lease=lease, worker=worker, kind=kind, data=data)


class Event(models.Model):
    """Append-only log of what happened to leases: served, saved, submitted, expired, refused."""

    class Kind(models.TextChoices):
        LEASED = "leased", "leased"
        SERVED = "served", "served"
        SAVED = "saved", "saved"
        SUBMITTED = "submitted", "submitted"
        EXPIRED = "expired", "expired"
        REFUSED = "refused", "refused"
        OPENED = "opened", "study opened"
        CLOSED = "closed", "study closed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="events")
    lease = models.ForeignKey(
        Lease, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    worker = models.ForeignKey(
        Worker, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = EventManager()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValidationError("events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("events are append-only")
