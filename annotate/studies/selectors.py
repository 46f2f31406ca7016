"""Reads of studies by name."""

from __future__ import annotations

from annotate.errors import StudyError
from annotate.models import Study


def study_get(*, name: str) -> Study:
    """The study called ``name``; a missing one is a :class:`~annotate.errors.StudyError`."""
    study = Study.objects.filter(name=name).first()
    if study is None:
        raise StudyError(f"no study named {name}")
    return study
