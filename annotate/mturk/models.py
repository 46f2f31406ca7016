"""MTurk's side of a study: HITs, their assignments bound to leases, qualifications, the audit.

These rows moved here from ``annotate`` with their tables (each keeps its ``annotate_*`` name),
so existing databases keep their data; ``annotate`` itself never reads them.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotate.models import Lease, Study


class MTurkQualification(models.Model):
    """A custom qualification we own (found or created by name), per mode (sandbox or live)."""

    name = models.CharField(max_length=200)
    sandbox = models.BooleanField()
    type_id = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "annotate_mturkqualification"
        constraints = [
            models.UniqueConstraint(fields=["name", "sandbox"], name="mturk_qualification_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({'sandbox' if self.sandbox else 'live'})"


class HitQuerySet(models.QuerySet["Hit"]):
    """Published HITs (MTurk answered with an id) apart from intents still waiting for one."""

    def published(self) -> HitQuerySet:
        return self.filter(state=Hit.State.PUBLISHED)

    def pending(self) -> HitQuerySet:
        return self.filter(state=Hit.State.PENDING)


class Hit(models.Model):
    """One HIT of a study: ``max_assignments`` distinct workers, one HIT type.

    The row is written as an intent (``pending``, no ``hit_id``) before MTurk is asked to create
    the HIT, and becomes ``published`` when MTurk's answer (or a lookup by ``annotation``) gives
    its id: a crash in between leaves a pending row that the next publish resolves.
    """

    class State(models.TextChoices):
        PENDING = "pending", "intent written, MTurk's answer not recorded"
        PUBLISHED = "published", "published (MTurk's HIT id known)"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="hits")
    sandbox = models.BooleanField()
    index = models.PositiveIntegerField(help_text="position in the study's batch")
    request_token = models.CharField(max_length=64, unique=True)
    annotation = models.CharField(
        max_length=255, blank=True, help_text="the RequesterAnnotation the HIT is found again by"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PUBLISHED)
    hit_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    hit_type_id = models.CharField(max_length=64)
    hit_group_id = models.CharField(max_length=64, blank=True)
    max_assignments = models.PositiveSmallIntegerField()
    reward = models.DecimalField(max_digits=8, decimal_places=2)
    lifetime_seconds = models.PositiveIntegerField()
    duration_seconds = models.PositiveIntegerField()
    auto_approve_seconds = models.PositiveIntegerField()
    status = models.CharField(max_length=20, blank=True, help_text="MTurk's HITStatus, last seen")
    expiration = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    synced = models.DateTimeField(null=True, blank=True)

    objects = HitQuerySet.as_manager()

    class Meta:
        db_table = "annotate_hit"
        ordering = ["study", "index"]
        constraints = [
            models.UniqueConstraint(fields=["study", "sandbox", "index"], name="hit_unique_index"),
            models.CheckConstraint(
                condition=Q(state="pending", hit_id__isnull=True)
                | Q(state="published", hit_id__isnull=False),
                name="hit_id_iff_published",
            ),
        ]

    def __str__(self) -> str:
        return self.hit_id or f"pending HIT {self.request_token}"


class HitAssignment(models.Model):
    """An MTurk assignment (one worker on one HIT) and the Blindspot lease it is bound to.

    Keyed on (assignment id, worker id): MTurk reuses an assignment id after a return. Created on
    accept by the worker page, or by ``mturk sync`` for one we never saw (``lease`` null). A bonus
    is an intent (token, amount, ``bonus_intended``) before it is sent, done once ``bonused``.
    """

    class MTurkStatus(models.TextChoices):
        ACCEPTED = "Accepted", "accepted (not yet submitted to MTurk)"
        SUBMITTED = "Submitted", "submitted"
        APPROVED = "Approved", "approved"
        REJECTED = "Rejected", "rejected"

    hit = models.ForeignKey(Hit, on_delete=models.PROTECT, related_name="assignments")
    assignment_id = models.CharField(max_length=64)
    worker_id = models.CharField(max_length=64)
    lease = models.ForeignKey(
        Lease, null=True, blank=True, on_delete=models.PROTECT, related_name="mturk_assignments"
    )
    turk_submit_to = models.URLField(blank=True)
    mturk_status = models.CharField(
        max_length=20, choices=MTurkStatus.choices, default=MTurkStatus.ACCEPTED
    )
    accepted = models.DateTimeField(null=True, blank=True)
    submitted = models.DateTimeField(null=True, blank=True)
    reviewed = models.DateTimeField(null=True, blank=True)
    feedback = models.CharField(max_length=1024, blank=True)
    bonus = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="the bonus intended (``bonus_intended`` set) or paid (``bonused`` set)",
    )
    bonus_token = models.CharField(max_length=64, blank=True)
    bonus_intended = models.DateTimeField(
        null=True, blank=True, help_text="when the bonus's intent was written, before sending it"
    )
    bonused = models.DateTimeField(null=True, blank=True, help_text="when the bonus was paid")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "annotate_hitassignment"
        ordering = ["hit", "created"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignment_id", "worker_id"], name="hit_assignment_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.assignment_id} ({self.worker_id}, {self.mturk_status})"


class MTurkCall(models.Model):
    """The audit trail: every MTurk API call we made, its parameters and how it ended."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    operation = models.CharField(max_length=64)
    sandbox = models.BooleanField()
    study = models.ForeignKey(
        Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="mturk_calls"
    )
    params = models.JSONField(default=dict, blank=True)
    ok = models.BooleanField()
    error_code = models.CharField(max_length=100, blank=True)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "annotate_mturkcall"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.operation} {'ok' if self.ok else self.error_code}"
        )
