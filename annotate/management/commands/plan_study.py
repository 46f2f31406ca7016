"""``manage.py plan_study``: participants, cost per provider and duration before a study runs."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import CommandParser

from annotate.studies.planning import PRESETS, PlanRequest, study_plan
from robustness.registry.cli import BlindspotCommand, positive_float, positive_int


def _rates(text: str) -> dict[str, float]:
    """``critic=92.3,AT=19.1`` → {"critic": 92.3, "AT": 19.1}."""
    rates = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            name = ""
        if not sep or not name.strip():
            raise ValueError(f"{part!r} is not NAME=PERCENT")
    return rates


def _money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if not value > 0:
        raise ValueError("the amount must be positive")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError("must lie strictly between 0 and 1")
    return value


class Command(BlindspotCommand):
    help = (
        "Plan a study: the participants needed to tell conditions apart in % change (power by "
        "simulation through the analysis itself), the cost on each provider and the duration."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        what = parser.add_argument_group("conditions (one of)")
        what.add_argument("--preset", choices=sorted(PRESETS), help="thesis Table 4.2's rates")
        what.add_argument("--rates", type=_rates, help="NAME=PERCENT,… expected % change")
        what.add_argument("--sets", help="stimulus sets (comma-separated); needs --difference")
        what.add_argument(
            "--difference", type=float, help="smallest difference in % change worth detecting"
        )
        what.add_argument(
            "--base-rate", type=float, default=50.0, help="% change of the first set (50: worst)"
        )
        parser.add_argument(
            "--reference",
            help="compare every condition with this one (default: every pair; --preset: the "
            "adversary critic)",
        )
        parser.add_argument("--alpha", type=_share, default=0.05)
        parser.add_argument("--power", type=_share, default=0.8)
        parser.add_argument(
            "--answers-per-worker",
            type=positive_int,
            default=23,
            help="study images per assignment (default: 25 images, 2 attention checks)",
        )
        parser.add_argument("--raters", type=positive_int, default=1, help="raters per image")
        clustering = parser.add_mutually_exclusive_group()
        clustering.add_argument(
            "--icc", type=float, help="assumed worker intra-class correlation (logit scale)"
        )
        clustering.add_argument("--pilot", help="a pilot study to estimate ICC and timings from")
        parser.add_argument("--minutes", type=positive_float, help="minutes per assignment")
        parser.add_argument(
            "--arrivals-per-hour", type=positive_float, help="participants starting per hour"
        )
        parser.add_argument("--reward", type=_money, help="reward per participant")
        parser.add_argument(
            "--hourly",
            type=_money,
            default=Decimal("9.00"),
            help="reward per hour when no --reward",
        )
        parser.add_argument("--simulations", type=positive_int, default=300)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="print the plan as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        reference = opts["reference"]
        if reference is None and opts["preset"] == "table4.2":
            reference = "adversary critic"
        request = PlanRequest(
            rates=opts["rates"] or {},
            preset=opts["preset"],
            sets=tuple(s.strip() for s in (opts["sets"] or "").split(",") if s.strip()),
            difference=opts["difference"],
            base_rate=opts["base_rate"],
            reference=reference,
            alpha=opts["alpha"],
            power=opts["power"],
            answers_per_worker=opts["answers_per_worker"],
            raters=opts["raters"],
            icc=opts["icc"] if opts["icc"] is not None or opts["pilot"] else 0.1,
            pilot=opts["pilot"],
            minutes=opts["minutes"],
            arrivals_per_hour=opts["arrivals_per_hour"],
            reward=opts["reward"],
            hourly=opts["hourly"],
            simulations=opts["simulations"],
            seed=opts["seed"],
        )
        result = study_plan(request)
        if opts["json"]:
            self.stdout.write(json.dumps(result.to_dict(), indent=2))
        else:
            self.stdout.write("\n".join(result.lines()))
