"""What every management command shares: argument types, entity flags, one error mapping.

Commands are adapters: they parse options, call a service and print. :class:`BlindspotCommand`
turns any :class:`~robustness.errors.BlindspotError` into a one-line ``CommandError`` (exit 1,
no traceback), so no command lists exception classes of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from robustness.errors import BlindspotError


class BlindspotCommand(BaseCommand):
    """A command whose expected failures end in one line: ``CommandError: <message>``.

    ``interrupted`` is what Ctrl-C prints (how to resume); None lets KeyboardInterrupt through.
    """

    interrupted: str | None = None

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except BlindspotError as exc:
            raise CommandError(exc.message) from None
        except KeyboardInterrupt:
            if self.interrupted is None:
                raise
            raise CommandError(self.interrupted.format(**options)) from None


def _warn_alias(option_string: str | None, preferred: str) -> None:
    if option_string != preferred:
        print(
            f"warning: {option_string} is deprecated; use {preferred} "
            "(the old spelling goes in the next release)",
            file=sys.stderr,
        )


class _Aliased:
    """Mixin for an argparse action: warn on stderr when an old spelling of the flag was used."""

    def __init__(self, *args: Any, preferred: str, **kwargs: Any) -> None:
        self.preferred = preferred
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        _warn_alias(option_string, self.preferred)
        super().__call__(parser, namespace, values, option_string)  # type: ignore[misc]


class _StoreAlias(_Aliased, argparse._StoreAction):
    """Store the value like the main flag."""


class _AppendAlias(_Aliased, argparse._AppendAction):
    """Append the value like the main flag."""


def entity_option(
    parser: CommandParser,
    entity: str,
    *,
    aliases: Sequence[str] = (),
    help: str | None = None,  # noqa: A002 — argparse's own name
    **kwargs: Any,
) -> None:
    """Add ``--<entity>`` (``--study``, ``--model``, ``--set``), with old spellings as aliases.

    Every command names an entity with the same flag; ``aliases`` (e.g. ``--name``) still work
    for one release and print a deprecation warning.
    """
    flag = f"--{entity}"
    parser.add_argument(
        flag,
        *aliases,
        dest=entity,
        action=_StoreAlias,
        preferred=flag,
        metavar=entity.upper(),
        help=help or f"the {entity}'s name",
        **kwargs,
    )


def param_option(
    parser: CommandParser,
    *,
    aliases: Sequence[str] = (),
    metavar: str = "KEY=VALUE",
    help: str = "a hyper-parameter (repeatable)",  # noqa: A002 — argparse's own name
) -> None:
    """Add ``--param KEY=VALUE`` (repeatable): every command's flag for hyper-parameters.

    ``aliases`` (``--set`` in ``evaluate`` and ``attack``, which now names stimulus sets)
    still work for one release and print a deprecation warning.
    """
    parser.add_argument(
        "--param",
        *aliases,
        dest="param",
        type=key_value,
        action=_AppendAlias,
        preferred="--param",
        default=[],
        metavar=metavar,
        help=help,
    )


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    return _whole_number(text, 1, "must be positive")


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, zero or above."""
    return _whole_number(text, 0, "must not be negative")


def positive_float(text: str) -> float:
    """An argparse type: a number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def key_value(text: str) -> tuple[str, str]:
    """An argparse type: ``KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key.strip(), value.strip()


def float_list(text: str) -> list[float]:
    """An argparse type: comma-separated non-negative numbers."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give non-negative numbers")
    return values


def write_json(path: Path | None, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` (folders created); nothing when None."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
