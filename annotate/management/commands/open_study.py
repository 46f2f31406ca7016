"""``manage.py open_study``: open a study to workers and print its worker link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.models import Study
from annotate.studies import StudyError, study_link, study_open


class Command(BaseCommand):
    help = "Open a draft or closed study and print the link to send to workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = Study.objects.filter(name=opts["name"]).first()
        if study is None:
            raise CommandError(f"no study named {opts['name']}")
        if study.status == Study.Status.OPEN:
            self.stdout.write(f"study {study.name} is already open")
        else:
            try:
                study = study_open(study=study)
            except StudyError as e:
                raise CommandError(str(e)) from None
            self.stdout.write(f"study {study.name} is open")
        self.stdout.write(f"worker link: {study_link(study, base_url=opts['base_url'])}")
