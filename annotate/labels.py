"""The answer alphabet: what a worker may type for an image. Plain Python (no Django).

The one definition: the ``Answer`` model and its database constraint, the validation of
submissions, the analysis and the labeling page (sent to it by the server) all read it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral
from typing import Any

UNSURE = "?"  # "I cannot tell"
DIGITS = tuple("0123456789")
LABELS = (*DIGITS, UNSURE)
MAX_DIGIT = len(DIGITS) - 1  # label fields (original, target, predictions) hold 0..MAX_DIGIT


def non_digits(values: Iterable[Any], *, most: int = 5) -> list[Any]:
    """Up to ``most`` distinct values, in order of appearance, that are not a digit 0–9.

    Every stored label field holds a digit; anything else (10 is the code of '?') would make
    answers count as the wrong outcome. ``None`` (no target) is skipped.
    """
    bad: list[Any] = []
    for value in values:
        ok = isinstance(value, Integral) and not isinstance(value, bool)
        if value is None or (ok and 0 <= value <= MAX_DIGIT) or value in bad:
            continue
        bad.append(value)
        if len(bad) == most:
            break
    return bad
