"""``manage.py export_responses``: every answer of a study with its provenance, as CSV or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from annotate.analysis.exports import responses_csv_lines
from annotate.analysis.selectors import study_responses
from annotate.studies.selectors import study_get
from robustness.registry.cli import BlindspotCommand, entity_option


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """The rows as CSV (header first) or as a JSON list of objects."""
    if fmt == "json":
        return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
    return "".join(responses_csv_lines(rows))


class Command(BlindspotCommand):
    help = "Write every answer of a study (worker, assignment, stimulus, condition, labels)."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", required=True)
        parser.add_argument("--format", choices=["csv", "json"], default="csv")
        parser.add_argument("--output", type=Path, help="a file to write (default: stdout)")
        parser.add_argument(
            "--include-drafts",
            action="store_true",
            help="also the answers saved so far in active and expired leases",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"])
        rows = study_responses(study=study, include_drafts=opts["include_drafts"])
        text = render(rows, opts["format"])
        simulated = sum(row["simulated"] for row in rows)
        note = f" ({simulated} marked simulated)" if study.simulated else ""
        if opts["output"] is None:
            self.stdout.write(text, ending="")
            self.stderr.write(f"{len(rows)} answers of study {study.name}{note}")
            return
        try:
            with opts["output"].open("w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as e:
            raise CommandError(f"cannot write {opts['output']}: {e.strerror or e}") from None
        self.stdout.write(
            f"wrote {len(rows)} answers of study {study.name} to {opts['output']}{note}"
        )
