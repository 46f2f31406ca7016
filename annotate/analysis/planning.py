"""How many participants a study needs, by simulation through the analysis itself (pure).

A plan is a set of conditions with their expected "% change", the pairs worth telling apart,
α, the power wanted and the design: answers per participant (the study images of one
assignment, spread evenly over the conditions as the partition design does) and raters per
image. Participants differ: each has an effect on the log-odds of answering the target, normal
with sd σ_w, the same in every condition, so one participant's answers are correlated — the
worker intra-class correlation ``icc = σ_w² / (σ_w² + π²/3)`` (the latent, logistic scale). A
rate is the share over participants, so each condition's log-odds is set for its *mean* rate
to be the one planned.

:func:`power` simulates whole studies as :class:`Responses` and runs the report's own
comparison (clustered tests, Holm over every pair), so the power promised is the power of the
analysis that will be run. :func:`plan` starts from the textbook sample size inflated by the
design effect ``1 + (m − 1)·ρ`` (m answers per participant per condition, ρ the ICC on the
scale of the rates) and searches the number of participants by simulation. :func:`pilot_icc`
estimates the ICC from a pilot's answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import stats
from scipy.special import expit

from annotate.analysis.report import _compare
from annotate.analysis.responses import ExclusionRule, Responses, exclude, included_answers
from robustness.errors import BlindspotError

#: Thesis Table 4.2: "% change" of the high-confidence attack's examples, per defense.
TABLE_4_2: dict[str, float] = {
    "adversary critic": 92.29,
    "margin maximization": 81.77,
    "VAT": 26.8,
    "AT": 19.1,
}
_NODES, _WEIGHTS = hermegauss(40)  # E[f(Z)], Z ~ N(0, 1), as Σ w f(x) / √(2π)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
ORIGINAL, TARGET = 3, 8  # every simulated image: a 3 made to look like an 8


class PlanError(BlindspotError):
    """A plan that cannot be computed (a rate outside (0, 100), an ICC outside [0, 1), …)."""

    code = "plan_refused"


@dataclass(frozen=True, kw_only=True)
class Design:
    """What the plan is for: conditions (name → expected % change), pairs of interest
    (names; every pair when empty), α, power, answers per participant, raters per image and
    the worker ICC."""

    rates: dict[str, float]
    pairs: tuple[tuple[str, str], ...] = ()
    alpha: float = 0.05
    power: float = 0.8
    answers_per_worker: int = 23  # the default assignment: 25 images, 2 attention checks
    raters: int = 1
    icc: float = 0.1
    pairs_all: tuple[tuple[str, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.rates) < 2:
            raise PlanError("a plan needs at least two conditions")
        for name, rate in self.rates.items():
            if not 0 < rate < 100:
                raise PlanError(f"the % change of {name!r} must be in (0, 100), got {rate}")
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            raise PlanError("alpha and power must be in (0, 1)")
        if not 0 <= self.icc < 1:
            raise PlanError(f"the worker ICC must be in [0, 1), got {self.icc}")
        if self.answers_per_worker < len(self.rates):
            raise PlanError(
                f"{self.answers_per_worker} answers per participant cannot cover "
                f"{len(self.rates)} conditions"
            )
        if self.raters < 1:
            raise PlanError("raters must be at least 1")
        every = tuple(combinations(self.rates, 2))
        object.__setattr__(self, "pairs_all", every)
        pairs = self.pairs or every
        for a, b in pairs:
            if a not in self.rates or b not in self.rates or a == b:
                raise PlanError(f"unknown pair {a!r} vs {b!r}")
        object.__setattr__(self, "pairs", tuple(pairs))

    @property
    def worker_sd(self) -> float:
        """σ_w on the logit scale for the ICC."""
        return math.sqrt(self.icc / (1 - self.icc) * math.pi**2 / 3)


def _mean_rate(mu: np.ndarray, sd: float) -> np.ndarray:
    return expit(np.asarray(mu)[..., None] + sd * _NODES) @ _WEIGHTS


def _logodds(rate: float, sd: float) -> float:
    """The log-odds μ whose mean rate over participants, E[expit(μ + σ_w Z)], is ``rate``."""
    low, high = -40.0, 40.0
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if _mean_rate(np.array(mid), sd) < rate else (low, mid)
    return (low + high) / 2


def linear_icc(rate: float, sd: float) -> float:
    """The ICC on the scale of the answers (0/1) that σ_w gives at a mean rate."""
    mu = _logodds(rate, sd)
    p = expit(mu + sd * _NODES)
    return float(((p - rate) ** 2) @ _WEIGHTS / (rate * (1 - rate)))


def simulate(design: Design, workers: int, rng: np.random.Generator) -> Responses:
    """One study of ``workers`` participants under ``design`` as a responses table."""
    names = list(design.rates)
    c, m = len(names), design.answers_per_worker
    worker = np.repeat(np.arange(workers), m)
    # each participant's answers cycle through the conditions from a random start (balanced
    # within the assignment, as the partition design), in a random order
    start = rng.integers(0, c, size=(workers, 1))
    grid = rng.permuted((np.arange(m) + start) % c, axis=1)
    condition = grid.ravel()
    # images: per condition, each rated by `raters` participants (in order of arrival)
    image = np.empty(len(worker), dtype=np.int64)
    for k in range(c):
        where = np.flatnonzero(condition == k)
        image[where] = k * 10**9 + np.arange(len(where)) // design.raters
    sd = design.worker_sd
    mu = np.array([_logodds(design.rates[n] / 100, sd) for n in names])
    effect = rng.normal(0.0, sd, workers)
    change = rng.random(len(worker)) < expit(mu[condition] + effect[worker])
    n = len(worker)
    return Responses(
        condition=np.array(names, dtype=object)[condition].astype(str),
        worker=worker,
        image=image,
        label=np.where(change, str(TARGET), str(ORIGINAL)),
        original=np.full(n, ORIGINAL),
        target=np.full(n, TARGET),
        is_attention=np.zeros(n, bool),
        attention_expected=np.full(n, -1),
    )


def power(
    design: Design, workers: int, *, simulations: int = 300, seed: int = 0
) -> dict[tuple[str, str], float]:
    """Per pair of interest, the share of simulated studies in which the report's comparison
    rejects at α after Holm's correction over every pair."""
    if workers < 2:
        raise PlanError("a study needs at least two participants")
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(design.pairs, 0)
    wanted = {frozenset(p): p for p in design.pairs}
    for _ in range(simulations):
        marked, _ = exclude(simulate(design, workers, rng), rule=ExclusionRule.none())
        for row in _compare(marked)["pairs"]:
            pair = wanted.get(frozenset((row["a"], row["b"])))
            if pair is not None and row["p_holm"] < design.alpha:
                hits[pair] += 1
    return {pair: k / simulations for pair, k in hits.items()}


def design_effect(design: Design) -> float:
    """1 + (m − 1)·ρ: m answers per participant per condition, ρ the ICC on the answers' scale
    at the mean planned rate (the textbook inflation; :func:`plan` checks it by simulation)."""
    per_condition = design.answers_per_worker / len(design.rates)
    mean_rate = float(np.mean(list(design.rates.values()))) / 100
    return 1 + (per_condition - 1) * linear_icc(mean_rate, design.worker_sd)


def textbook_workers(design: Design) -> int:
    """Participants for the hardest pair by the two-proportion formula (Bonferroni over every
    pair) times the design effect."""
    z_a = stats.norm.ppf(1 - design.alpha / (2 * len(design.pairs_all)))
    z_b = stats.norm.ppf(design.power)
    per_condition = design.answers_per_worker / len(design.rates)
    need = 0.0
    for a, b in design.pairs:
        p, q = design.rates[a] / 100, design.rates[b] / 100
        bar = (p + q) / 2
        n = z_a * math.sqrt(2 * bar * (1 - bar)) + z_b * math.sqrt(p * (1 - p) + q * (1 - q))
        need = max(need, (n / (p - q)) ** 2)
    return max(2, math.ceil(need * design_effect(design) / per_condition))


@dataclass(frozen=True)
class Plan:
    """The participants (one assignment each) the design needs and the power they give."""

    design: Design
    workers: int
    power: dict[tuple[str, str], float]
    textbook_workers: int
    design_effect: float
    simulations: int
    evaluated: dict[int, float]  # participants tried → the weakest pair's power

    @property
    def answers(self) -> int:
        return self.workers * self.design.answers_per_worker


def plan(
    design: Design, *, simulations: int = 300, seed: int = 0, max_workers: int = 20_000
) -> Plan:
    """The fewest participants whose simulated power reaches ``design.power`` on every pair of
    interest (searched from the textbook estimate; each candidate simulated with the same
    seed, so the search compares like with like)."""
    start = textbook_workers(design)
    tried: dict[int, float] = {}

    def weakest(n: int) -> float:
        if n not in tried:
            tried[n] = min(power(design, n, simulations=simulations, seed=seed).values())
        return tried[n]

    low, high = max(1, start // 2), start
    while weakest(high) < design.power:
        low, high = high, high * 2
        if high > max_workers:
            raise PlanError(f"more than {max_workers} participants would be needed")
    while weakest(low) >= design.power and low > 2:
        low, high = max(2, low // 2), low
    if weakest(low) >= design.power:
        high = low
    while high - low > max(1, high // 50):  # within 2% (or one participant)
        mid = (low + high) // 2
        low, high = (low, mid) if weakest(mid) >= design.power else (mid, high)
    chosen = high
    return Plan(
        design=design,
        workers=chosen,
        power=power(design, chosen, simulations=simulations, seed=seed),
        textbook_workers=start,
        design_effect=design_effect(design),
        simulations=simulations,
        evaluated=dict(sorted(tried.items())),
    )


def pilot_icc(responses: Responses, *, rule: ExclusionRule | None = None) -> float:
    """The worker ICC (latent scale, as :class:`Design`) a pilot's answers suggest.

    Moment estimate on the answers' scale — the between-participant variance of each one's
    share of "change" beyond the condition's rate, less its binomial part — then the σ_w that
    gives that ICC at the pilot's mean rate (:func:`linear_icc`). 0 when the pilot shows no
    clustering beyond chance.
    """
    marked, _ = exclude(responses, rule=rule or ExclusionRule.none())
    included = included_answers(marked)
    if len(included) == 0:
        raise PlanError("the pilot has no answers to estimate from")
    change = (included.outcomes() == 0).astype(float)
    _, cond = np.unique(included.condition, return_inverse=True)
    rate = np.bincount(cond, weights=change) / np.bincount(cond)
    expected = rate[cond]
    workers, w = np.unique(included.worker, return_inverse=True)
    if len(workers) < 2:
        raise PlanError("the pilot needs at least two participants")
    counts = np.bincount(w)
    excess = np.bincount(w, weights=change - expected) / counts
    binomial = np.bincount(w, weights=expected * (1 - expected)) / counts**2
    between = float(np.var(excess, ddof=1) - binomial.mean())
    mean = float(change.mean())
    if mean in (0.0, 1.0) or between <= 0:
        return 0.0
    target = min(0.99, between / float(np.mean(expected * (1 - expected))))
    low, high = 0.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if linear_icc(mean, mid) < target else (low, mid)
    sd = (low + high) / 2
    return sd**2 / (sd**2 + math.pi**2 / 3)


def pairs_against(reference: str, names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Every condition against ``reference`` (the preset's question: critic vs each other)."""
    return tuple((reference, n) for n in names if n != reference)


__all__ = [
    "TABLE_4_2",
    "Design",
    "Plan",
    "PlanError",
    "design_effect",
    "linear_icc",
    "pairs_against",
    "pilot_icc",
    "plan",
    "power",
    "simulate",
    "textbook_workers",
]
