"""``manage.py create_study``: a draft study over stimulus sets, with its frozen design."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from annotate.models import Study
from annotate.studies.creation import study_create
from annotate.studies.spec import StudySpec
from robustness.registry.cli import (
    BlindspotCommand,
    entity_option,
    non_negative_int,
    positive_int,
)


class Command(BlindspotCommand):
    help = "Create a study (draft) whose conditions are the given stimulus sets."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", aliases=("--name",), required=True)
        parser.add_argument("--sets", required=True, help="comma-separated set names")
        parser.add_argument("--design", choices=Study.Design.values, default="partition")
        parser.add_argument("--size", type=positive_int, default=25)
        parser.add_argument("--attention-checks", type=non_negative_int, default=2)
        parser.add_argument("--raters", type=positive_int, default=1)
        parser.add_argument("--per-worker", type=positive_int, default=1)
        parser.add_argument("--lease-minutes", type=positive_int, default=30)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--attention-set", help="an attention set (else one is generated)")
        parser.add_argument("--limit", type=positive_int, help="use only the first N sources")
        parser.add_argument(
            "--allow-short",
            action="store_true",
            help="no fillers: an assignment may hold one study image fewer than the size",
        )
        parser.add_argument("--instructions-file", type=Path)
        parser.add_argument("--title")

    def handle(self, *args: Any, **opts: Any) -> None:
        instructions = None
        if opts["instructions_file"] is not None:
            try:
                instructions = opts["instructions_file"].read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                raise CommandError(f"cannot read {opts['instructions_file']}: {e}") from None
        spec = StudySpec(
            name=opts["study"],
            sets=opts["sets"],
            design=opts["design"],
            size=opts["size"],
            attention_checks=opts["attention_checks"],
            raters=opts["raters"],
            assignments_per_worker=opts["per_worker"],
            lease_seconds=60 * opts["lease_minutes"],
            seed=opts["seed"],
            instructions=instructions,
            title=opts["title"],
            attention_set=opts["attention_set"],
            limit=opts["limit"],
            allow_short=opts["allow_short"],
        )
        study = study_create(spec=spec)
        plan = study.config["plan"]
        self.stdout.write(
            f"study {study.name} ({study.status}, {study.design}): "
            f"{len(study.config['sets'])} conditions, {plan['assignments']} assignments, "
            f"{plan['items']} items ({plan['attention_items']} attention checks, "
            f"{plan['filler_items']} fillers), "
            f"{plan['dropped_sources']} dropped sources"
        )
        self.stdout.write(f"config hash {study.config_hash}")
