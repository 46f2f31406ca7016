"""What the attack and defense registries share: lazy class lookup and parameter coercion.

A registry maps names to "module:Class" strings, imported on first use so that one broken
module cannot break the rest; hyper-parameters from the command line are strings, coerced
to the types of the class's parameter dataclass.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any

from robustness.errors import ConfigError


def lookup(registry: dict[str, str], name: str, kind: str) -> type:
    """The class registered as ``name``; an unknown name lists the choices."""
    try:
        target = registry[name]
    except KeyError:
        raise ConfigError(
            f"unknown {kind} {name!r}; choose one of: {', '.join(registry)}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


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
    raise ConfigError(f"parameter {key}={value!r} is not a valid {names}")


def build_params(cls: type, params: dict[str, Any], owner: str) -> dict[str, Any]:
    """Validate keys of ``params`` against dataclass ``cls`` and coerce their values."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise ConfigError(f"{owner} has no parameter {unknown[0]!r} (allowed: {allowed})")
    hints = typing.get_type_hints(cls)
    return {k: coerce(v, hints.get(k), k) for k, v in params.items()}


def as_float(value: float | str, key: str) -> float:
    """``value`` as a float, for optional float fields that a caller may set directly (the
    registry's :func:`coerce` already turns command-line strings into floats)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {key}={value!r} is not a valid float") from None
