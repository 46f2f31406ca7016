"""Plan a study before it costs anything: participants, cost per provider, duration.

Reads what it needs from the database (stimulus sets, a pilot study's answers and timings)
and the installed providers (their fees); the statistics are :mod:`annotate.analysis.planning`.
``manage.py plan_study`` and the console's new-study page call :func:`study_plan`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from annotate.analysis import planning
from annotate.analysis.responses import Responses
from annotate.analysis.selectors import responses_arrays
from annotate.models import Lease, StimulusSet, Study
from annotate.providers.base import CostEstimate
from annotate.providers.registry import providers
from annotate.studies.policy import exclusion_rule

PRESETS = {"table4.2": planning.TABLE_4_2}
DEFAULT_MINUTES = 4  # a 25-image assignment on the labeling page, with instructions
DEFAULT_ARRIVALS = 30.0  # participants per hour when no pilot says otherwise
CENT = Decimal("0.01")


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    """What the researcher asks: conditions and their rates (a preset, explicit rates, or
    stimulus sets with the smallest difference worth detecting), the design, and either an
    assumed ICC or a pilot study; money per participant as a reward or an hourly rate."""

    rates: dict[str, float] = field(default_factory=dict)
    preset: str | None = None
    sets: tuple[str, ...] = ()
    difference: float | None = None
    base_rate: float = 50.0
    reference: str | None = None  # compare every condition with this one (default: all pairs)
    alpha: float = 0.05
    power: float = 0.8
    answers_per_worker: int = 23
    raters: int = 1
    icc: float | None = None
    pilot: str | None = None
    minutes: float | None = None
    arrivals_per_hour: float | None = None
    reward: Decimal | None = None
    hourly: Decimal = Decimal("9.00")
    simulations: int = 300
    seed: int = 0


@dataclass(frozen=True)
class StudyPlan:
    """A computed plan: the statistics, where the ICC and timings came from, money and time."""

    plan: planning.Plan
    icc_source: str
    minutes: float
    minutes_source: str
    arrivals_per_hour: float
    arrivals_source: str
    reward: Decimal
    costs: list[CostEstimate]

    @property
    def hours(self) -> float:
        """Expected duration: participants arriving at the rate, plus one completion."""
        return self.plan.workers / self.arrivals_per_hour + self.minutes / 60

    def lines(self) -> list[str]:
        """The plan as text, for the command and the console."""
        p, d = self.plan, self.plan.design
        per = d.answers_per_worker / len(d.rates)
        out = [
            f"Conditions ({len(d.rates)}): " + ", ".join(f"{n} {r:g}%" for n, r in d.rates.items()),
            f"α {d.alpha:g} (Holm over all {len(d.pairs_all)} pairs), power ≥ {d.power:g}; "
            f"{d.answers_per_worker} answers per participant (~{per:.1f} per condition), "
            f"{d.raters} rater{'s' if d.raters > 1 else ''} per image; "
            f"worker ICC {d.icc:.3f} (σ {d.worker_sd:.2f} on the logit scale; {self.icc_source})",
            f"Textbook estimate: {p.textbook_workers} participants "
            f"(design effect {p.design_effect:.2f})",
            f"Simulated ({p.simulations} studies per size, the report's own tests): "
            f"{p.workers} participants = {p.workers} assignments, {p.answers} answers",
        ]
        for (a, b), value in p.power.items():
            out.append(f"  {a} ({d.rates[a]:g}%) vs {b} ({d.rates[b]:g}%): power {value:.2f}")
        out.append(
            f"Duration: about {self.hours:.1f} h at {self.arrivals_per_hour:g} participants/hour "
            f"({self.arrivals_source}), each taking about {self.minutes:.1f} min "
            f"({self.minutes_source})"
        )
        out.append(f"Cost at {self.reward:.2f} per participant:")
        for cost in self.costs:
            out.append(f"  {cost.describe()}")
            out.extend(f"    note: {note}" for note in cost.notes)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        p, d = self.plan, self.plan.design
        return {
            "rates": d.rates,
            "alpha": d.alpha,
            "power_target": d.power,
            "answers_per_worker": d.answers_per_worker,
            "raters": d.raters,
            "icc": d.icc,
            "icc_source": self.icc_source,
            "participants": p.workers,
            "assignments": p.workers,
            "answers": p.answers,
            "textbook_participants": p.textbook_workers,
            "design_effect": p.design_effect,
            "simulations": p.simulations,
            "power": [{"a": a, "b": b, "power": v} for (a, b), v in p.power.items()],
            "minutes": self.minutes,
            "arrivals_per_hour": self.arrivals_per_hour,
            "hours": self.hours,
            "reward": str(self.reward),
            "costs": [
                {
                    "provider": c.provider,
                    "currency": c.currency,
                    "paid": str(c.paid),
                    "fees": str(c.fees),
                    "vat": str(c.vat),
                    "total": str(c.total),
                    "notes": list(c.notes),
                }
                for c in self.costs
            ],
        }


def _rates(request: PlanRequest) -> dict[str, float]:
    chosen = [bool(request.rates), bool(request.preset), bool(request.sets)]
    if sum(chosen) != 1:
        raise planning.PlanError("give exactly one of: rates, a preset, or stimulus sets")
    if request.preset:
        try:
            return dict(PRESETS[request.preset])
        except KeyError:
            raise planning.PlanError(
                f"unknown preset {request.preset!r}; choose {', '.join(PRESETS)}"
            ) from None
    if request.rates:
        return dict(request.rates)
    missing = sorted(
        set(request.sets)
        - set(StimulusSet.objects.filter(name__in=request.sets).values_list("name", flat=True))
    )
    if missing:
        raise planning.PlanError(f"no stimulus set named {', '.join(missing)}")
    if request.difference is None or not 0 < request.difference < 100:
        raise planning.PlanError("with stimulus sets, give the smallest difference (in % points)")
    high = request.base_rate + request.difference
    if not 0 < request.base_rate < 100 or not high < 100:
        raise planning.PlanError("the base rate and base rate + difference must lie in (0, 100)")
    # the first set at the base rate, the others the smallest difference above it
    return {name: (request.base_rate if i == 0 else high) for i, name in enumerate(request.sets)}


def _pilot(name: str) -> tuple[Responses, list[float], float | None]:
    """A pilot's answers, its completion minutes and its arrivals per hour (None if unknown)."""
    study = Study.objects.filter(name=name).first()
    if study is None:
        raise planning.PlanError(f"no study named {name!r} to use as a pilot")
    columns = responses_arrays(study=study)
    responses = Responses.from_columns(columns)
    leases = [
        (start, done)
        for start, done in Lease.objects.filter(
            study=study, status=Lease.Status.SUBMITTED
        ).values_list("leased", "submitted")
        if done is not None
    ]
    minutes = [(done - start).total_seconds() / 60 for start, done in leases]
    arrivals = None
    if len(leases) >= 2:
        first, last = min(s for s, _ in leases), max(s for s, _ in leases)
        span = (last - first).total_seconds() / 3600
        arrivals = (len(leases) - 1) / span if span > 0 else None
    return responses, minutes, arrivals


def study_plan(request: PlanRequest) -> StudyPlan:
    """Compute a plan (simulation included: seconds to a minute)."""
    rates = _rates(request)
    minutes, minutes_source = request.minutes, "given"
    arrivals, arrivals_source = request.arrivals_per_hour, "given"
    if request.pilot:
        responses, completion, pilot_arrivals = _pilot(request.pilot)
        study = Study.objects.get(name=request.pilot)
        icc = planning.pilot_icc(responses, rule=exclusion_rule(study))
        icc_source = f"estimated from pilot {request.pilot}"
        if minutes is None and completion:
            minutes = statistics.median(completion)
            minutes_source = f"median of {len(completion)} in pilot {request.pilot}"
        if arrivals is None and pilot_arrivals:
            arrivals, arrivals_source = pilot_arrivals, f"pilot {request.pilot}"
        if request.icc is not None:
            raise planning.PlanError("give an assumed ICC or a pilot, not both")
    elif request.icc is not None:
        icc, icc_source = request.icc, "assumed"
    else:
        raise planning.PlanError("give an assumed worker ICC or a pilot study to estimate it")
    if minutes is None:
        minutes, minutes_source = DEFAULT_MINUTES, "default"
    if arrivals is None:
        arrivals, arrivals_source = DEFAULT_ARRIVALS, "default"
    if not minutes > 0 or not arrivals > 0:
        raise planning.PlanError("minutes and arrivals per hour must be positive")
    pairs: tuple[tuple[str, str], ...] = ()
    if request.reference:
        if request.reference not in rates:
            raise planning.PlanError(f"no condition {request.reference!r} to compare against")
        pairs = planning.pairs_against(request.reference, list(rates))
    design = planning.Design(
        rates=rates,
        pairs=pairs,
        alpha=request.alpha,
        power=request.power,
        answers_per_worker=request.answers_per_worker,
        raters=request.raters,
        icc=icc,
    )
    if request.simulations < 50:
        raise planning.PlanError("use at least 50 simulated studies per size")
    result = planning.plan(design, simulations=request.simulations, seed=request.seed)
    reward = request.reward
    if reward is None:
        reward = (request.hourly * Decimal(str(minutes)) / 60).quantize(CENT, ROUND_CEILING)
    if not reward > 0:
        raise planning.PlanError("the reward must be positive")
    whole_minutes = max(1, math.ceil(minutes))
    costs = [
        p.estimate_cost(participants=result.workers, reward=reward, minutes=whole_minutes)
        for p in providers()
    ]
    return StudyPlan(
        plan=result,
        icc_source=icc_source,
        minutes=float(minutes),
        minutes_source=minutes_source,
        arrivals_per_hour=float(arrivals),
        arrivals_source=arrivals_source,
        reward=reward,
        costs=costs,
    )
