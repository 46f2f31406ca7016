"""``manage.py close_study``: stop giving out a study's assignments."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.models import Study
from annotate.studies import StudyError, study_close


class Command(BaseCommand):
    help = "Close an open study: no new leases; answers already given are kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)

    def handle(self, *args: Any, **opts: Any) -> None:
        study = Study.objects.filter(name=opts["name"]).first()
        if study is None:
            raise CommandError(f"no study named {opts['name']}")
        try:
            study = study_close(study=study)
        except StudyError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"study {study.name} is closed")
