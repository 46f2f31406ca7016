"""Reads of the model registry."""

from __future__ import annotations

from django.db.models import QuerySet

from robustness.models import TrainedModel


def model_list(
    *, status: str | None = None, arch: str | None = None, defense: str | None = None
) -> QuerySet[TrainedModel]:
    """Registered models, newest first, optionally filtered."""
    qs = TrainedModel.objects.all()
    if status:
        qs = qs.filter(status=status)
    if arch:
        qs = qs.filter(arch=arch)
    if defense:
        qs = qs.filter(defense=defense)
    return qs


def model_get(*, name: str) -> TrainedModel | None:
    return TrainedModel.objects.filter(name=name).first()
