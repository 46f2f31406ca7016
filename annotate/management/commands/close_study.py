"""``manage.py close_study``: stop giving out a study's assignments."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from annotate.studies.lifecycle import study_close
from annotate.studies.selectors import study_get
from robustness.registry.cli import BlindspotCommand, entity_option


class Command(BlindspotCommand):
    help = "Close an open study: no new leases; answers already given are kept."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", aliases=("--name",), required=True)

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_close(study=study_get(name=opts["study"]))
        self.stdout.write(f"study {study.name} is closed")
