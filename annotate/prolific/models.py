"""Prolific's side of a study: the remote study, its submissions bound to leases, bonuses, audit.

Every row that stands for something created or paid on Prolific is written *before* the call
(the intent), so a crash at any point leaves a record that the next run looks up remotely
before it acts: a study by its internal name, a submission by its id, a bonus by the
submissions it pays.
"""

from __future__ import annotations

from django.db import models

from annotate.models import Lease, Study


class ProlificStudy(models.Model):
    """One Prolific study created for a Blindspot study (its internal name carries our id)."""

    class State(models.TextChoices):
        CREATING = "creating", "creating (intent written, remote study not yet confirmed)"
        DRAFT = "draft", "draft on Prolific (not published)"
        PUBLISHING = "publishing", "publish requested"
        PUBLISHED = "published", "published"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="prolific_studies")
    internal_name = models.CharField(max_length=200, unique=True)
    prolific_id = models.CharField(max_length=64, blank=True, db_index=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.CREATING)
    remote_status = models.CharField(
        max_length=32, blank=True, help_text="Prolific's study status, last seen"
    )
    currency = models.CharField(max_length=3)
    reward = models.PositiveIntegerField(help_text="per place, in the currency's minor unit")
    estimated_minutes = models.PositiveSmallIntegerField()
    max_minutes = models.PositiveSmallIntegerField()
    places = models.PositiveIntegerField()
    completion_code = models.CharField(max_length=32)
    returned_code = models.CharField(max_length=32, help_text="for no consent / returned")
    options = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    published = models.DateTimeField(null=True, blank=True)
    synced = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "created"]

    def __str__(self) -> str:
        return self.prolific_id or self.internal_name


class ProlificBonus(models.Model):
    """One bulk bonus payment: written before setup, marked before pay, confirmed from the
    submissions. Prolific's pay call is not idempotent, so ``pay_requested`` set without
    ``paid`` means "may have been paid": the next run looks on the submissions first."""

    class State(models.TextChoices):
        PLANNED = "planned", "planned (nothing sent)"
        SET_UP = "set_up", "set up on Prolific (not paid)"
        PAYING = "paying", "pay requested (may have been paid)"
        PAID = "paid", "paid (Prolific accepted the request)"
        CONFIRMED = "confirmed", "confirmed on every submission"

    prolific_study = models.ForeignKey(
        ProlificStudy, on_delete=models.PROTECT, related_name="bonuses"
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.PLANNED)
    amount = models.PositiveIntegerField(help_text="per submission, in the minor unit")
    reason = models.CharField(max_length=500, blank=True)
    bulk_id = models.CharField(max_length=64, blank=True)
    cost = models.JSONField(default=dict, blank=True, help_text="Prolific's setup answer")
    created = models.DateTimeField(auto_now_add=True)
    pay_requested = models.DateTimeField(null=True, blank=True)
    paid = models.DateTimeField(null=True, blank=True)
    confirmed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return f"bonus {self.pk} ({self.state})"


class ProlificSubmission(models.Model):
    """A Prolific submission (one participant's attempt; its id is the ``SESSION_ID`` they
    arrive with) and the Blindspot lease it took. Created when the participant consents, or by
    ``prolific sync`` for one we never saw (``lease`` null)."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "active"
        AWAITING_REVIEW = "AWAITING REVIEW", "awaiting review"
        APPROVED = "APPROVED", "approved"
        REJECTED = "REJECTED", "rejected"
        RETURNED = "RETURNED", "returned"
        TIMED_OUT = "TIMED-OUT", "timed out"
        SCREENED_OUT = "SCREENED OUT", "screened out"
        PARTIALLY_APPROVED = "PARTIALLY APPROVED", "partially approved"
        UNKNOWN = "UNKNOWN", "not yet seen on Prolific"

    prolific_study = models.ForeignKey(
        ProlificStudy, on_delete=models.PROTECT, related_name="submissions"
    )
    submission_id = models.CharField(max_length=64, unique=True)
    participant_id = models.CharField(max_length=64, db_index=True)
    lease = models.ForeignKey(
        Lease, null=True, blank=True, on_delete=models.PROTECT, related_name="prolific_submissions"
    )
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.UNKNOWN)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    review_intent = models.CharField(max_length=16, blank=True, help_text="APPROVE or REJECT")
    review_message = models.TextField(blank=True)
    reviewed = models.DateTimeField(null=True, blank=True)
    bonus = models.ForeignKey(
        ProlificBonus, null=True, blank=True, on_delete=models.PROTECT, related_name="submissions"
    )
    bonus_baseline = models.PositiveSmallIntegerField(
        default=0, help_text="bonuses Prolific showed on the submission before ours was paid"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    synced = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["prolific_study", "created"]

    def __str__(self) -> str:
        return f"{self.submission_id} ({self.participant_id}, {self.status})"


class ProlificCall(models.Model):
    """The audit trail: every Prolific API request we made and how it ended."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=300)
    study = models.ForeignKey(
        Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="prolific_calls"
    )
    params = models.JSONField(default=dict, blank=True)
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.method} {self.path} {self.status_code}"


class ProlificHookEvent(models.Model):
    """A webhook delivery we accepted, by Prolific's event id (a redelivery is ignored)."""

    event_id = models.CharField(max_length=100, unique=True)
    event_type = models.CharField(max_length=100)
    resource_id = models.CharField(max_length=64, blank=True)
    received = models.DateTimeField(auto_now_add=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.resource_id}"
