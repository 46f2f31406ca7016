"""A request for a model's high-confidence stimulus set: one typed object from form to service.

The console form builds a :class:`StimulusRequest`, the job runs ``generate_stimuli`` with its
:meth:`~StimulusRequest.argv`, the command parses its flags back into one, and
:func:`~annotate.stimuli.adversarial.stimulus_set_generate` takes it. Values are checked once,
here, with messages a researcher can act on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from annotate.errors import StimulusError
from annotate.models import name_validator
from annotate.stimuli.imaging import CONTROL_KINDS
from robustness.attacks.high_confidence import HighConfidence

SPLITS = ("test", "valid")
TARGETS = ("closest", "random")
ATTACK = HighConfidence()  # the thesis's test-time settings (§4.5): steps, clip, overshoot


def parse_confidence(value: float | str) -> float | str:
    """'original' (each image's clean confidence) or a number in (0, 1), from a flag or a caller."""
    text = str(value).strip()
    if isinstance(value, str):
        if text.lower() == "original":
            return "original"
        try:
            value = float(text)
        except ValueError:
            raise StimulusError(
                f"confidence must be 'original' or a number in (0, 1), got {text!r}"
            ) from None
    if isinstance(value, bool) or not 0 < float(value) < 1:
        raise StimulusError(f"confidence must be in (0, 1) or 'original', got {text}")
    return float(value)


def parse_controls(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Control kinds from 'clean,noise' or a sequence: checked, deduplicated, in canonical order."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    kinds = {k.strip() for k in items if k.strip()}
    unknown = sorted(kinds - set(CONTROL_KINDS))
    if unknown:
        raise StimulusError(
            f"unknown control {', '.join(unknown)}; choose from {', '.join(CONTROL_KINDS)}"
        )
    return tuple(k for k in CONTROL_KINDS if k in kinds)


def check_set_name(name: str) -> None:
    """Refuse a set name the registry would not accept."""
    try:
        name_validator(name)
    except ValidationError:
        raise StimulusError(
            f"invalid set name {name!r}: letters, digits, '.', '_', '-' only, at most 100"
        ) from None


@dataclass(frozen=True, kw_only=True)
class StimulusRequest:
    """Generate ``model``'s high-confidence adversarial set ``set_name`` and its control sets.

    ``model`` is a registry name; ``name`` defaults to ``{model}-hc``. Sources are the first
    ``limit`` images of ``split``; targets are the closest class or a random one; the attack
    stops at ``confidence`` (the clean image's, or a number in (0, 1)) or after ``steps``.
    ``batch_size`` images are committed at a time, so a stopped run resumes. ``replace`` deletes
    an existing set of that name first.
    """

    model: str
    name: str | None = None
    split: str = "test"
    limit: int | None = None
    target: str = "closest"
    confidence: float | str = "original"
    seed: int = 0
    batch_size: int = 500
    steps: int = ATTACK.steps
    controls: tuple[str, ...] = ()
    replace: bool = False

    def __post_init__(self) -> None:
        if not self.model:
            raise StimulusError("a model is needed")
        if self.split not in SPLITS:
            raise StimulusError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.target not in TARGETS:
            raise StimulusError(f"target must be 'closest' or 'random', got {self.target!r}")
        for label, value in (
            ("limit", self.limit),
            ("batch size", self.batch_size),
            ("steps", self.steps),
        ):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise StimulusError(f"{label} must be positive, got {value}")
        object.__setattr__(self, "name", self.name or f"{self.model}-hc")
        object.__setattr__(self, "confidence", parse_confidence(self.confidence))
        object.__setattr__(self, "controls", parse_controls(self.controls))
        for name in (self.set_name, *self.control_names):
            check_set_name(name)

    @property
    def set_name(self) -> str:
        """The adversarial set's name (``name``, filled in with its default)."""
        assert self.name is not None  # set in __post_init__
        return self.name

    @property
    def control_names(self) -> tuple[str, ...]:
        """The control sets' names, ``{set}-{kind}``."""
        return tuple(f"{self.set_name}-{kind}" for kind in self.controls)

    def params(self) -> dict[str, Any]:
        """The parameters stored with the set: the same name with others is another set."""
        return {
            "attack": "hc",
            "steps": self.steps,
            "clip": ATTACK.clip,
            "overshoot": ATTACK.overshoot,
            "target": self.target,
            "confidence": self.confidence,
            "split": self.split,
            "limit": self.limit,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for a job's record)."""
        data = dataclasses.asdict(self)
        data["controls"] = list(self.controls)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StimulusRequest:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StimulusError(f"unknown stimulus request field {unknown[0]!r}")
        return cls(**data)

    def argv(self) -> list[str]:
        """The ``manage.py`` arguments that run this request (``generate_stimuli``)."""
        argv = [
            "generate_stimuli",
            "--model", self.model,
            "--set", self.set_name,
            "--split", self.split,
            "--target", self.target,
            "--confidence", str(self.confidence),
            "--seed", str(self.seed),
            "--batch-size", str(self.batch_size),
            "--steps", str(self.steps),
        ]  # fmt: skip
        if self.limit is not None:
            argv += ["--limit", str(self.limit)]
        if self.controls:
            argv += ["--controls", ",".join(self.controls)]
        if self.replace:
            argv.append("--replace")
        return argv
