"""Stimulus sets and their stimuli: what workers see, with everything staff need to analyse it."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from annotate.labels import MAX_DIGIT
from annotate.models.keys import name_validator
from robustness.registry.models import RunStatus, TracksRun, TrainedModel


class StimulusSet(TracksRun, models.Model):
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

    Status = RunStatus  # generation is a resumable run, like training

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
    example = models.ForeignKey(
        "Stimulus",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="an attention set's digit reserved for the instructions: no assignment shows it",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        db_table = "annotate_adversarialset"  # the table of its first name, AdversarialSet

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.model.name})"


DIGIT_VALIDATORS = [MinValueValidator(0), MaxValueValidator(MAX_DIGIT)]
LABEL_FIELDS = ("original_label", "target", "clean_pred", "shown_pred")  # digits 0–9 only


class Stimulus(models.Model):
    """One image of a set, with everything the analysis needs (staff only).

    ``image`` is exactly what a worker sees (8-bit PNG); every prediction and confidence here
    was measured on that quantised image. Labels and predictions are digits 0–9 (validators and
    a database constraint): the answer alphabet codes '?' as 10, so 10 here would match it.
    """

    set = models.ForeignKey(StimulusSet, on_delete=models.CASCADE, related_name="stimuli")
    source_index = models.PositiveIntegerField(help_text="index into the dataset split")
    original_label = models.PositiveSmallIntegerField(validators=DIGIT_VALIDATORS)
    clean_pred = models.PositiveSmallIntegerField(validators=DIGIT_VALIDATORS)
    clean_confidence = models.FloatField()
    target = models.PositiveSmallIntegerField(null=True, blank=True, validators=DIGIT_VALIDATORS)
    requested_confidence = models.FloatField(null=True, blank=True)
    achieved_confidence = models.FloatField(
        null=True, blank=True, help_text="p(target) on the quantised image"
    )
    shown_pred = models.PositiveSmallIntegerField(
        validators=DIGIT_VALIDATORS, help_text="prediction on the shown image"
    )
    shown_confidence = models.FloatField(help_text="max-softmax on the shown image")
    l2_norm = models.FloatField(default=0.0, help_text="‖shown − clean‖₂ (8-bit images)")
    success = models.BooleanField(default=False)
    iterations = models.PositiveIntegerField(default=0)
    image = models.FileField(upload_to="stimuli/", max_length=255)
    clean_image = models.FileField(upload_to="stimuli/", max_length=255, blank=True)

    class Meta:
        ordering = ["set", "source_index"]
        constraints = [
            models.UniqueConstraint(fields=["set", "source_index"], name="stimulus_unique_source"),
            *(  # null: a stimulus without a target
                models.CheckConstraint(
                    condition=Q(**{f"{name}__isnull": True})
                    | Q(**{f"{name}__range": (0, MAX_DIGIT)}),
                    name=f"stimulus_{name}_digit",
                )
                for name in LABEL_FIELDS
            ),
        ]

    def __str__(self) -> str:
        return f"{self.set.name}#{self.source_index}"
