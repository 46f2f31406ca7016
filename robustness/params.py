"""Hyper-parameters from the command line: strings coerced to a dataclass's field types."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn ``value`` (often a string) into ``annotation``: bool, int, float, str, unions."""
    if not isinstance(value, str):
        return value
    options = typing.get_args(annotation) or (annotation,)
    if value.lower() == "none" and type(None) in options:
        return None
    for kind in (bool, int, float):
        if kind not in options:
            continue
        if kind is bool:
            if value.lower() in {"1", "true", "yes", "0", "false", "no"}:
                return value.lower() in {"1", "true", "yes"}
            continue
        try:
            return kind(value)
        except ValueError:
            continue
    if str in options or any(isinstance(o, str) for o in options):  # str or Literal[...]
        return value
    names = "/".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"parameter {key}={value!r} is not a valid {names}")


def build_params(cls: type, params: dict[str, Any], owner: str) -> dict[str, Any]:
    """Validate keys of ``params`` against dataclass ``cls`` and coerce their values."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"{owner} has no parameter {unknown[0]!r} (allowed: {allowed})")
    hints = typing.get_type_hints(cls)
    return {k: coerce(v, hints.get(k), k) for k, v in params.items()}
