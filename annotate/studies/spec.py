"""A study to create, as one typed request: the console form, the command, the service."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from annotate.errors import StudyError
from annotate.models import Study, name_validator

MAX_SMALL = 32767  # the database stores sizes, raters and per-worker limits as small integers


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A draft study over stimulus sets (one condition each, in order) and its design.

    Every assignment holds exactly ``size`` images: ``attention_checks`` clean digits from
    ``attention_set`` (generated from the first condition's model when None), the study's
    images, and clean fillers from the same set where the sources do not divide evenly —
    unless ``allow_short``, when an assignment may hold one study image fewer instead. Each
    image is rated by ``raters`` distinct workers; a worker may take ``assignments_per_worker``
    assignments, each for ``lease_seconds``. ``limit`` uses only the first sources.
    """

    name: str
    sets: tuple[str, ...]
    design: str = Study.Design.PARTITION
    size: int = 25
    attention_checks: int = 2
    raters: int = 1
    assignments_per_worker: int = 1
    lease_seconds: int = 1800
    seed: int = 0
    instructions: str | None = None
    title: str | None = None
    attention_set: str | None = None
    limit: int | None = None
    allow_short: bool = False

    def __post_init__(self) -> None:
        try:
            name_validator(self.name)
        except ValidationError:
            raise StudyError(
                f"{self.name!r} is not a valid name: letters, digits, '.', '_', '-'"
            ) from None
        sets = self.sets.split(",") if isinstance(self.sets, str) else self.sets
        object.__setattr__(self, "sets", tuple(s.strip() for s in sets if s.strip()))
        if self.design not in Study.Design.values:
            raise StudyError(
                f"unknown design {self.design!r}; choose {' or '.join(Study.Design.values)}"
            )
        for label, value in (
            ("size", self.size),
            ("raters", self.raters),
            ("assignments per worker", self.assignments_per_worker),
            ("lease seconds", self.lease_seconds),
        ):
            if value < 1:
                raise StudyError(f"{label} must be positive, got {value}")
        if self.limit is not None and self.limit < 1:
            raise StudyError(f"limit must be positive, got {self.limit}")
        if not 0 <= self.attention_checks < self.size:
            raise StudyError(f"attention checks must be ≥ 0 and below the size {self.size}")
        if max(self.size, self.raters, self.assignments_per_worker) > MAX_SMALL:
            raise StudyError("size, raters and assignments per worker must be below 32768")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = dataclasses.asdict(self)
        data["sets"] = list(self.sets)
        return data
