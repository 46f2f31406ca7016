"""Attack registry: every attack of the thesis by name, built from validated parameters.

Each attack lives in its own module; ``build(name, **params)`` returns a configured instance
and ``attack(model, x, y)`` returns an :class:`AttackResult`.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any

from robustness.attacks.base import Attack, AttackResult

# name -> "module:Class" (imported on first use so one broken attack cannot break the rest)
ATTACKS: dict[str, str] = {
    "fgsm": "robustness.attacks.fgsm:FGSM",
    "pgd": "robustness.attacks.pgd:PGD",
    "deepfool": "robustness.attacks.deepfool:DeepFool",
    "cw": "robustness.attacks.cw:CarliniWagnerL2",
    "hc": "robustness.attacks.high_confidence:HighConfidence",
    "pdgd": "robustness.attacks.pdpgd:PDGD",
    "pdpgd": "robustness.attacks.pdpgd:PDPGD",
}

__all__ = ["ATTACKS", "Attack", "AttackResult", "build", "get_class", "names"]


def names() -> list[str]:
    return list(ATTACKS)


def get_class(name: str) -> type[Attack]:
    try:
        target = ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Command-line strings to the field's type (int, float, bool, str, or their unions)."""
    if not isinstance(value, str):
        return value
    options = typing.get_args(annotation) or (annotation,)
    if value.lower() == "none" and type(None) in options:
        return None
    for kind in (bool, int, float):
        if kind in options:
            try:
                if kind is bool:
                    if value.lower() in {"1", "true", "yes", "0", "false", "no"}:
                        return value.lower() in {"1", "true", "yes"}
                    continue
                return kind(value)
            except ValueError:
                continue
    if str in options or typing.Literal in (typing.get_origin(annotation),):
        return value
    if any(isinstance(o, str) for o in options):  # Literal["a", "b"]
        return value
    raise ValueError(f"parameter {key}={value!r} is not a valid {annotation}")


def build(name: str, **params: Any) -> Attack:
    """An attack by registry name; unknown or malformed parameters are a ValueError."""
    cls = get_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"attack {name!r} has no parameter {unknown[0]!r} "
            f"(allowed: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(v, hints.get(k), k) for k, v in params.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"attack {name!r}: {exc}") from None
