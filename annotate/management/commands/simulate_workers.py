"""``manage.py simulate_workers``: fill an open study with simulated (clearly marked) answers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from annotate.studies.selectors import study_get
from annotate.work.simulation import workers_simulate
from robustness.registry.cli import BlindspotCommand, entity_option, positive_int


class Command(BlindspotCommand):
    help = "Let N simulated workers each label one assignment of an open study (marked simulated)."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", required=True)
        parser.add_argument("--workers", type=positive_int, required=True)
        parser.add_argument("--seed", type=int, default=0, help="non-negative")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"])
        done = workers_simulate(study=study, n=opts["workers"], seed=opts["seed"])
        full = " (the study is full)" if done < opts["workers"] else ""
        self.stdout.write(
            f"{done} simulated workers submitted an assignment of study {study.name}{full}; "
            "its answers are marked simulated"
        )
