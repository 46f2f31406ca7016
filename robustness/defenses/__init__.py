"""Defense registry: ``build(name, params)`` returns a configured :class:`Defense`."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from robustness.defenses.base import BatchLoss, Defense
from robustness.defenses.dropout import Dropout
from robustness.defenses.none import NoDefense

DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (NoDefense, Dropout)}

__all__ = ["DEFENSES", "BatchLoss", "Defense", "build", "names", "parse_params"]


def names() -> list[str]:
    return sorted(DEFENSES)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a command-line string into the field's declared type (int, float, bool, str)."""
    if not isinstance(value, str):
        return value
    kind = annotation if isinstance(annotation, type) else None
    try:
        if kind is bool:
            lowered = value.lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(value)
            return lowered in {"1", "true", "yes"}
        if kind in (int, float):
            return kind(value)
    except ValueError:
        raise ValueError(f"parameter {key}={value!r} is not a valid {kind.__name__}") from None
    return value


def parse_params(name: str, params: dict[str, Any] | None) -> Any:
    """Validate ``params`` against the defense's dataclass; unknown keys are an error."""
    cls = _lookup(name)
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"defense {name!r} has no parameter {unknown[0]!r} (allowed: {allowed})")
    hints = typing.get_type_hints(cls.Params)
    values = {k: _coerce(v, hints.get(k), k) for k, v in params.items()}
    return cls.Params(**values)


def build(name: str, params: dict[str, Any] | None = None) -> Defense:
    """A defense by registry name with validated hyper-parameters."""
    return _lookup(name)(parse_params(name, params))


def _lookup(name: str) -> type[Defense]:
    try:
        return DEFENSES[name]
    except KeyError:
        raise ValueError(f"unknown defense {name!r}; choose one of: {', '.join(names())}") from None
