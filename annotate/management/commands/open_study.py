"""``manage.py open_study``: open a study to workers and print its worker link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from annotate.models import Study
from annotate.studies.lifecycle import study_link, study_open
from annotate.studies.selectors import study_get
from robustness.registry.cli import BlindspotCommand, entity_option


class Command(BlindspotCommand):
    help = "Open a draft or closed study and print the link to send to workers."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", aliases=("--name",), required=True)
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"])
        if study.status == Study.Status.OPEN:
            self.stdout.write(f"study {study.name} is already open")
        else:
            study = study_open(study=study)
            self.stdout.write(f"study {study.name} is open")
        self.stdout.write(f"worker link: {study_link(study, base_url=opts['base_url'])}")
