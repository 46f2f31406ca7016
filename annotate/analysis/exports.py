"""The one CSV format of every export channel (command, console, staff API)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from annotate.analysis.selectors import RESPONSE_FIELDS


class _Echo:
    """A file-like object whose ``write`` returns the line: csv rows one at a time."""

    def write(self, value: str) -> str:
        return value


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value: Any) -> Any:
    """Booleans as true/false, missing values as empty cells, and text that a spreadsheet would
    run as a formula (starting with = + - @, tab or CR) kept as text with a leading '."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value


def responses_csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Export rows as CSV lines, header first: the one CSV format of every export channel."""
    writer = csv.writer(_Echo())
    yield writer.writerow(RESPONSE_FIELDS)
    for row in rows:
        yield writer.writerow([_csv_value(row[f]) for f in RESPONSE_FIELDS])
