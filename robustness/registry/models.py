"""The model registry: one row per trained (or training) network."""

from __future__ import annotations

from django.core.files.storage import storages
from django.core.validators import RegexValidator
from django.db import models

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


def artifact_storage():
    """Checkpoints live in the "artifacts" storage alias (settings.STORAGES)."""
    return storages["artifacts"]


class RunStatus(models.TextChoices):
    """Where a long, resumable job stands: a training run, or a stimulus set's generation."""

    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    INTERRUPTED = "interrupted", "interrupted"
    FAILED = "failed", "failed"
    DONE = "done", "done"


class TracksRun:
    """For models with ``status`` (a :class:`RunStatus`), ``error`` and ``updated`` fields."""

    def mark(self, status: str, error: str = "") -> None:
        """Record where the job stands and why it stopped (saves only those fields)."""
        self.status = status
        self.error = error
        self.save(update_fields=["status", "error", "updated"])  # type: ignore[attr-defined]


class TrainedModel(TracksRun, models.Model):
    """A network trained under one defense, with its configuration, history and weights."""

    Status = RunStatus

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[RegexValidator(NAME_PATTERN, "letters, digits, '.', '_' and '-' only")],
    )
    arch = models.CharField(max_length=40)
    defense = models.CharField(max_length=40)
    hyperparameters = models.JSONField(default=dict, help_text="the full TrainConfig")
    dataset = models.CharField(max_length=40, default="mnist")
    seed = models.IntegerField(default=0)
    device = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    epochs_done = models.PositiveIntegerField(default=0)
    epochs_total = models.PositiveIntegerField(default=0)
    history = models.JSONField(default=list, blank=True, help_text="one object per epoch")
    metrics = models.JSONField(default=dict, blank=True)
    checkpoint = models.FileField(
        storage=artifact_storage, upload_to="models/", blank=True, max_length=255
    )
    weights_sha256 = models.CharField(max_length=64, blank=True)
    train_seconds = models.FloatField(default=0.0, help_text="time in training steps")
    wall_seconds = models.FloatField(default=0.0, help_text="time of the whole run")
    error = models.TextField(blank=True, help_text="why the last run failed")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(epochs_done__lte=models.F("epochs_total")),
                name="trainedmodel_epochs_done_lte_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.arch}/{self.defense}, {self.status})"


class Job(models.Model):
    """One unit of work sent to the job queue (or run in-process): what, where, how far.

    Tasks carry only a job's id; the row holds the parameters (names and ids, never local
    paths), the state, progress, the host and device that ran it, timings, a log tail and the
    error. A fan-out (a reproduction grid, a stimulus set in chunks) is a parent job whose
    children are the cells; the parent is done when every child is.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    FINISHED = (State.DONE, State.FAILED, State.CANCELLED)

    kind = models.CharField(max_length=40, db_index=True)
    label = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    queue = models.CharField(max_length=40, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    task_id = models.CharField(max_length=64, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    host = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=80, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    log = models.TextField(blank=True, help_text="the last lines the job wrote")
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["state", "kind"])]

    def __str__(self) -> str:
        return f"job {self.pk} {self.kind} {self.label} ({self.state})"


class RunLock(models.Model):
    """Who is running the work named ``key`` (a model's training, a cell) and when it last
    showed life: one live run per key, whatever the queue delivers twice."""

    key = models.CharField(max_length=200, unique=True)
    runner = models.CharField(max_length=200, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(
        default=0, help_text="how many times a process started (or took over) this work"
    )

    def __str__(self) -> str:
        return f"{self.key} ({self.runner or 'free'})"
