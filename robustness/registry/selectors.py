"""Reads of the model registry."""

from __future__ import annotations

from django.db.models import QuerySet

from robustness.registry.files import RegistryError
from robustness.registry.models import TrainedModel


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
    """The model registered as ``name``, or None."""
    return TrainedModel.objects.filter(name=name).first()


def model_get_done(*, name: str) -> TrainedModel:
    """The finished model ``name``; a missing or unfinished one is a :class:`RegistryError`."""
    row = model_get(name=name)
    if row is None:
        raise RegistryError(f"no model named {name!r}; see manage.py models")
    if row.status != TrainedModel.Status.DONE:
        raise RegistryError(
            f"model {name!r} is {row.status}, not done; finish it with "
            f"manage.py train --model {name} --resume"
        )
    return row
