"""Studies and their frozen layout: conditions, assignments and the items of each assignment."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotate.models.keys import name_validator, opaque_key
from annotate.models.stimuli import Stimulus, StimulusSet
from annotate.providers.registry import LOCAL, provider_choices


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

    provider = models.CharField(
        max_length=20,
        choices=provider_choices,
        default=LOCAL,
        help_text="who recruits the workers: a registered recruitment provider's name",
    )
    provider_options = models.JSONField(
        default=dict, blank=True, help_text="the recruitment provider's settings for this study"
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
    set = models.ForeignKey(StimulusSet, on_delete=models.PROTECT, related_name="conditions")
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
    """One cell of an assignment's grid: a study stimulus, an attention check or a filler."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField()
    key = models.CharField(max_length=32, unique=True, default=opaque_key, editable=False)
    stimulus = models.ForeignKey(Stimulus, on_delete=models.PROTECT, related_name="items")
    condition = models.ForeignKey(
        Condition, null=True, blank=True, on_delete=models.PROTECT, related_name="items"
    )
    is_attention = models.BooleanField(default=False)
    is_filler = models.BooleanField(
        default=False,
        help_text="a clean digit from the attention pool completing the assignment's size; "
        "its answer is kept but neither analysed nor used as a check",
    )

    class Meta:
        ordering = ["assignment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "position"], name="item_unique_pos"),
            models.UniqueConstraint(fields=["assignment", "stimulus"], name="item_unique_stimulus"),
            models.CheckConstraint(  # exactly one of: a condition, a check, a filler
                condition=Q(is_attention=True, is_filler=False, condition__isnull=True)
                | Q(is_attention=False, is_filler=True, condition__isnull=True)
                | Q(is_attention=False, is_filler=False, condition__isnull=False),
                name="item_one_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignment}#{self.position}"
