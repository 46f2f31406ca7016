"""Output serializers of the staff API: models, stimulus sets, stimuli, studies with progress,
jobs with their children, and the shape of a refusal.

Staff only: these name labels, targets, models, defenses and conditions. Related rows are read
through ``select_related``/``prefetch_related`` and counts through annotations made by the
viewsets' querysets, so no field here runs a query of its own.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.models import Condition, Stimulus, StimulusSet, Study
from robustness.registry.models import Job, TrainedModel

MODEL_FIELDS = (
    "name",
    "arch",
    "defense",
    "dataset",
    "seed",
    "status",
    "epochs_done",
    "epochs_total",
    "metrics",
    "weights_sha256",
    "device",
    "train_seconds",
    "wall_seconds",
    "error",
    "created",
    "updated",
)


class TrainedModelSerializer(serializers.ModelSerializer):
    """A trained network in a list: configuration summary, status and robustness metrics."""

    class Meta:
        model = TrainedModel
        fields = MODEL_FIELDS


class TrainedModelDetailSerializer(serializers.ModelSerializer):
    """One trained network with its full configuration and per-epoch history."""

    class Meta:
        model = TrainedModel
        fields = (*MODEL_FIELDS, "hyperparameters", "history")


class StimulusSetSerializer(serializers.ModelSerializer):
    """A stimulus set with its model, parent set (for controls) and number of stimuli."""

    model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    defense = serializers.CharField(source="model.defense", read_only=True)
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    stimuli_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = StimulusSet
        fields = (
            "name",
            "kind",
            "model",
            "defense",
            "parent",
            "split",
            "params",
            "weights_sha256",
            "seed",
            "status",
            "progress_done",
            "progress_total",
            "stimuli_count",
            "device",
            "error",
            "simulated",
            "created",
            "updated",
        )


class StimulusSerializer(serializers.ModelSerializer):
    """One stimulus with its labels, predictions and image URLs (staff only: names the target)."""

    set = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Stimulus
        fields = (
            "id",
            "set",
            "source_index",
            "original_label",
            "clean_pred",
            "clean_confidence",
            "target",
            "requested_confidence",
            "achieved_confidence",
            "shown_pred",
            "shown_confidence",
            "l2_norm",
            "success",
            "iterations",
            "image",
            "clean_image",
        )


class ConditionSerializer(serializers.ModelSerializer):
    """A condition of a study: its position (the analysis's code) and its stimulus set."""

    set = serializers.CharField(source="set.name", read_only=True)
    kind = serializers.CharField(source="set.kind", read_only=True)
    model = serializers.CharField(source="set.model.name", read_only=True)
    defense = serializers.CharField(source="set.model.defense", read_only=True)

    class Meta:
        model = Condition
        fields = ("position", "set", "kind", "model", "defense")


class ProgressSerializer(serializers.Serializer):
    """Live progress, in the console's words (:mod:`annotate.analysis.progress`): each
    assignment is open, leased, submitted or excluded."""

    assignments = serializers.IntegerField()
    open = serializers.IntegerField(help_text="assignments no live lease holds")
    leased = serializers.IntegerField(help_text="held by an unexpired active lease")
    submitted = serializers.IntegerField(help_text="submitted by workers the study keeps")
    excluded = serializers.IntegerField(
        help_text="submitted by workers the study's exclusion rule excludes"
    )
    expired = serializers.IntegerField(help_text="leases expired, or active past their expiry")
    workers_excluded = serializers.IntegerField()
    answers = serializers.IntegerField(help_text="answers in submitted leases")


class StudySerializer(serializers.ModelSerializer):
    """A study with its conditions and live progress (from the viewset's annotations)."""

    conditions = ConditionSerializer(many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = (
            "name",
            "key",
            "title",
            "design",
            "status",
            "assignment_size",
            "attention_checks",
            "assignments_per_worker",
            "raters_per_image",
            "lease_seconds",
            "seed",
            "provider",
            "simulated",
            "config_hash",
            "created",
            "opened",
            "closed",
            "conditions",
            "progress",
        )

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, study: Study) -> dict[str, int]:
        """The study's counts from :func:`annotate.analysis.progress.study_progress` (batched
        per page), under the same names."""
        return ProgressSerializer(self.context["progress"][study.pk]).data


JOB_FIELDS = (
    "id",
    "kind",
    "label",
    "state",
    "queue",
    "progress_done",
    "progress_total",
    "host",
    "device",
    "attempts",
    "error",
    "created",
    "started",
    "finished",
    "heartbeat",
)


class JobChildSerializer(serializers.ModelSerializer):
    """A child of a fan-out (a chunk, a cell): its state, progress, where it ran, its error."""

    class Meta:
        model = Job
        fields = JOB_FIELDS


class JobSerializer(serializers.ModelSerializer):
    """A job in a list: state, progress, host and device, timings; its parent and how many
    children it has (a fan-out's parent counts its children in ``progress_*``)."""

    parent = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    children_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Job
        fields = (*JOB_FIELDS, "parent", "children_count")


class JobDetailSerializer(JobSerializer):
    """One job with its parameters, result, log tail and a summary of each child."""

    children = JobChildSerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = (
            *JOB_FIELDS,
            "parent",
            "children_count",
            "task_id",
            "params",
            "result",
            "log",
            "children",
        )


class ErrorSerializer(serializers.Serializer):
    """A refusal: a stable code, a one-line message and what to do about it."""

    error = serializers.CharField(help_text="a stable code, e.g. queue_unavailable")
    detail = serializers.CharField()
    hint = serializers.CharField(allow_blank=True)
