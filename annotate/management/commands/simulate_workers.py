"""``manage.py simulate_workers``: fill an open study with simulated (clearly marked) answers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.errors import WorkError
from annotate.models import Study
from annotate.simulation import simulate_workers
from annotate.studies import StudyError
from robustness.management.commands._options import positive_int


class Command(BaseCommand):
    help = "Let N simulated workers each label one assignment of an open study (marked simulated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", required=True, help="the study's name")
        parser.add_argument("--workers", type=positive_int, required=True)
        parser.add_argument("--seed", type=int, default=0, help="non-negative")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = Study.objects.filter(name=opts["study"]).first()
        if study is None:
            raise CommandError(f"no study named {opts['study']}")
        try:
            done = simulate_workers(study=study, n=opts["workers"], seed=opts["seed"])
        except (StudyError, WorkError) as e:
            raise CommandError(str(e)) from None
        full = " (the study is full)" if done < opts["workers"] else ""
        self.stdout.write(
            f"{done} simulated workers submitted an assignment of study {study.name}{full}; "
            "its answers are marked simulated"
        )
