"""``manage.py simulate_workers``: fill an open study with simulated (clearly marked) answers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from annotate.studies.selectors import study_get
from annotate.work.simulation import ABILITY_SD, BIAS_SD, workers_simulate
from robustness.registry.cli import BlindspotCommand, entity_option, positive_int


class Command(BlindspotCommand):
    help = "Let N simulated workers each label one assignment of an open study (marked simulated)."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", required=True)
        parser.add_argument("--workers", type=positive_int, required=True)
        parser.add_argument("--seed", type=int, default=0, help="non-negative")
        parser.add_argument(
            "--ability-sd",
            type=float,
            default=ABILITY_SD,
            help=f"sd of each worker's ability, logit scale, non-negative (default {ABILITY_SD})",
        )
        parser.add_argument(
            "--bias-sd",
            type=float,
            default=BIAS_SD,
            help=f"sd of each worker's bias toward the target, logit scale (default {BIAS_SD})",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"])
        done = workers_simulate(
            study=study,
            n=opts["workers"],
            seed=opts["seed"],
            ability_sd=opts["ability_sd"],
            bias_sd=opts["bias_sd"],
        )
        full = " (the study is full)" if done < opts["workers"] else ""
        self.stdout.write(
            f"{done} simulated workers submitted an assignment of study {study.name}{full}; "
            "its answers are marked simulated"
        )
