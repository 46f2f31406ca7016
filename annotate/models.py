"""The human-study data: stimulus sets, studies, assignments, leases, answers and events.

Staff-facing rows (sets, stimuli, conditions) carry labels, targets and provenance; what a
worker can reach goes through opaque keys only (``Study.key``, ``Item.key``, ``Lease.key``,
random image file names), so nothing served to a worker names a label, target, model,
defense or condition.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from robustness.models import NAME_PATTERN, TrainedModel

name_validator = RegexValidator(NAME_PATTERN, "letters, digits, '.', '_' and '-' only")


def opaque_key() -> str:
    """A 128-bit random URL-safe key (22 characters): unguessable and meaningless."""
    return secrets.token_urlsafe(16)


def completion_code() -> str:
    """A code a worker pastes back into a recruiting panel: 10 unambiguous characters."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))


class AdversarialSet(models.Model):
    """A set of stimuli from one model: adversarial examples, a control set or attention checks.

    Controls (``clean``, ``noise``, ``flipped``) are built from the same source images as their
    ``parent`` adversarial set; ``attention`` sets hold clean, unambiguous digits.
    """

    class Kind(models.TextChoices):
        ADVERSARIAL = "adversarial", "adversarial"
        CLEAN = "clean", "clean control"
        NOISE = "noise", "noise control"
        FLIPPED = "flipped", "flipped-perturbation control"
        ATTENTION = "attention", "attention checks"

    Status = TrainedModel.Status  # the same lifecycle as a training run

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ADVERSARIAL)
    model = models.ForeignKey(TrainedModel, on_delete=models.PROTECT, related_name="stimulus_sets")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="controls"
    )
    split = models.CharField(max_length=20, default="test")
    params = models.JSONField(default=dict, help_text="attack and selection parameters")
    weights_sha256 = models.CharField(max_length=64, blank=True, help_text="provenance")
    seed = models.IntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    device = models.CharField(max_length=80, blank=True)
    error = models.TextField(blank=True)
    simulated = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.model.name})"


class Stimulus(models.Model):
    """One image of a set, with everything the analysis needs (staff only).

    ``image`` is exactly what a worker sees (8-bit PNG); every prediction and confidence here
    was measured on that quantised image.
    """

    set = models.ForeignKey(AdversarialSet, on_delete=models.CASCADE, related_name="stimuli")
    source_index = models.PositiveIntegerField(help_text="index into the dataset split")
    original_label = models.PositiveSmallIntegerField()
    clean_pred = models.PositiveSmallIntegerField()
    clean_confidence = models.FloatField()
    target = models.PositiveSmallIntegerField(null=True, blank=True)
    requested_confidence = models.FloatField(null=True, blank=True)
    achieved_confidence = models.FloatField(
        null=True, blank=True, help_text="p(target) on the quantised image"
    )
    shown_pred = models.PositiveSmallIntegerField(help_text="prediction on the shown image")
    shown_confidence = models.FloatField(help_text="max-softmax on the shown image")
    l2_norm = models.FloatField(default=0.0, help_text="‖shown − clean‖₂ (8-bit images)")
    success = models.BooleanField(default=False)
    iterations = models.PositiveIntegerField(default=0)
    image = models.FileField(upload_to="stimuli/", max_length=255)
    clean_image = models.FileField(upload_to="stimuli/", max_length=255, blank=True)

    class Meta:
        ordering = ["set", "source_index"]
        constraints = [
            models.UniqueConstraint(fields=["set", "source_index"], name="stimulus_unique_source")
        ]

    def __str__(self) -> str:
        return f"{self.set.name}#{self.source_index}"


class Study(models.Model):
    """A blinded labeling study over conditions (stimulus sets), frozen once created."""

    class Design(models.TextChoices):
        PARTITION = "partition", "partition (each source image once, one condition)"
        FULL = "full", "full (every image of every condition)"

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        OPEN = "open", "open"
        CLOSED = "closed", "closed"

    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    key = models.CharField(max_length=32, unique=True, default=opaque_key, editable=False)
    title = models.CharField(max_length=200, default="Which digit is this?")
    instructions = models.TextField(blank=True)
    design = models.CharField(max_length=20, choices=Design.choices, default=Design.PARTITION)
    assignment_size = models.PositiveSmallIntegerField(default=25)
    attention_checks = models.PositiveSmallIntegerField(default=2)
    assignments_per_worker = models.PositiveSmallIntegerField(default=1)
    raters_per_image = models.PositiveSmallIntegerField(default=1)
    lease_seconds = models.PositiveIntegerField(default=30 * 60)
    seed = models.IntegerField(default=0)

    class Provider(models.TextChoices):
        LOCAL = "local", "local (study link)"
        MTURK = "mturk", "Amazon Mechanical Turk"

    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.LOCAL)
    provider_options = models.JSONField(
        default=dict, blank=True, help_text="the recruitment provider's settings (e.g. MTurk's)"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    config = models.JSONField(default=dict, help_text="the frozen design configuration")
    config_hash = models.CharField(max_length=64, editable=False)
    simulated = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    opened = models.DateTimeField(null=True, blank=True)
    closed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(
                condition=Q(attention_checks__lt=models.F("assignment_size")),
                name="study_checks_lt_size",
            ),
            models.CheckConstraint(
                condition=Q(assignments_per_worker__gte=1) & Q(raters_per_image__gte=1),
                name="study_positive_limits",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class Condition(models.Model):
    """One stimulus set taking part in a study."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="conditions")
    set = models.ForeignKey(AdversarialSet, on_delete=models.PROTECT, related_name="conditions")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["study", "position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "set"], name="condition_unique_set"),
            models.UniqueConstraint(fields=["study", "position"], name="condition_unique_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.study.name}/{self.set.name}"


class Assignment(models.Model):
    """A fixed, ordered bundle of items for one rater (``replicate`` numbers the raters)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    index = models.PositiveIntegerField()
    replicate = models.PositiveSmallIntegerField(default=0)
    block = models.PositiveIntegerField(default=0, help_text="assignments sharing source images")

    class Meta:
        ordering = ["study", "index"]
        constraints = [
            models.UniqueConstraint(fields=["study", "index"], name="assignment_unique_index")
        ]

    def __str__(self) -> str:
        return f"{self.study.name}[{self.index}]"


class Item(models.Model):
    """One cell of an assignment's grid: a study stimulus or an attention check."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField()
    key = models.CharField(max_length=32, unique=True, default=opaque_key, editable=False)
    stimulus = models.ForeignKey(Stimulus, on_delete=models.PROTECT, related_name="items")
    condition = models.ForeignKey(
        Condition, null=True, blank=True, on_delete=models.PROTECT, related_name="items"
    )
    is_attention = models.BooleanField(default=False)

    class Meta:
        ordering = ["assignment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "position"], name="item_unique_pos"),
            models.UniqueConstraint(fields=["assignment", "stimulus"], name="item_unique_stimulus"),
            models.CheckConstraint(
                condition=Q(is_attention=True, condition__isnull=True)
                | Q(is_attention=False, condition__isnull=False),
                name="item_attention_xor_condition",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignment}#{self.position}"


class Worker(models.Model):
    """A person taking part, identified by the panel's id or an anonymous one."""

    class Source(models.TextChoices):
        PANEL = "panel", "recruiting panel"
        ANONYMOUS = "anonymous", "anonymous"
        MTURK = "mturk", "Amazon Mechanical Turk"

    external_id = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.PANEL)
    simulated = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return self.external_id


class Lease(models.Model):
    """A worker's hold on an assignment: active until submitted, or expired after a timeout.

    Constraints make leasing safe without row locks: at most one live (active or submitted)
    lease per assignment, at most one active lease per worker and study, and a worker's live
    leases in a study occupy distinct slots below the study's limit (the service picks it).
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        SUBMITTED = "submitted", "submitted"
        EXPIRED = "expired", "expired"

    key = models.CharField(max_length=32, unique=True, default=opaque_key, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="leases")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="leases")
    worker = models.ForeignKey(Worker, on_delete=models.PROTECT, related_name="leases")
    slot = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    leased = models.DateTimeField()
    expires = models.DateTimeField()
    submitted = models.DateTimeField(null=True, blank=True)
    completion_code = models.CharField(max_length=16, default=completion_code, editable=False)
    provider_ref = models.CharField(
        max_length=100, blank=True, help_text="the provider's assignment id (MTurk)"
    )

    class Meta:
        ordering = ["-leased"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignment"],
                condition=Q(status__in=["active", "submitted"]),
                name="lease_one_live_per_assignment",
            ),
            models.UniqueConstraint(
                fields=["study", "worker"],
                condition=Q(status="active"),
                name="lease_one_active_per_worker",
            ),
            models.UniqueConstraint(
                fields=["study", "worker", "slot"],
                condition=Q(status__in=["active", "submitted"]),
                name="lease_worker_slot",
            ),
        ]
        indexes = [models.Index(fields=["study", "status", "expires"])]

    def __str__(self) -> str:
        return f"{self.assignment} → {self.worker} ({self.status})"


class Answer(models.Model):
    """A worker's label for one item of a lease: a digit 0–9 or '?' (cannot tell)."""

    LABELS = tuple("0123456789?")

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="answers")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="answers")
    label = models.CharField(max_length=1)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    saved = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["lease", "item__position"]
        constraints = [
            models.UniqueConstraint(fields=["lease", "item"], name="answer_unique_item"),
            models.CheckConstraint(
                condition=Q(label__in=list("0123456789?")), name="answer_label_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lease_id}:{self.item_id}={self.label}"


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


# --- Amazon Mechanical Turk: HITs, their assignments, qualifications and the call audit ---


class MTurkQualification(models.Model):
    """A custom qualification we own (found or created by name), per mode (sandbox or live)."""

    name = models.CharField(max_length=200)
    sandbox = models.BooleanField()
    type_id = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "sandbox"], name="mturk_qualification_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({'sandbox' if self.sandbox else 'live'})"


class Hit(models.Model):
    """One HIT published for a study: ``max_assignments`` distinct workers, one HIT type."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="hits")
    sandbox = models.BooleanField()
    index = models.PositiveIntegerField(help_text="position in the study's batch")
    request_token = models.CharField(max_length=64, unique=True)
    hit_id = models.CharField(max_length=64, unique=True)
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

    class Meta:
        ordering = ["study", "index"]
        constraints = [
            models.UniqueConstraint(fields=["study", "sandbox", "index"], name="hit_unique_index")
        ]

    def __str__(self) -> str:
        return self.hit_id


class HitAssignment(models.Model):
    """An MTurk assignment (one worker on one HIT) and the Blindspot lease it is bound to.

    Keyed on (assignment id, worker id): MTurk reuses an assignment id after a return. Created on
    accept by the worker page, or by ``mturk sync`` for one we never saw (``lease`` null).
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
    bonus = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    bonus_token = models.CharField(max_length=64, blank=True)
    bonused = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
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
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.operation} {'ok' if self.ok else self.error_code}"
        )
