"""Comparisons that respect clustering, the difference shown, inf in JSON, and the planner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from annotate.analysis import planning
from annotate.analysis.report import analyse, compare
from annotate.analysis.responses import ExclusionRule, Responses
from annotate.analysis.stats import clustered_difference, newcombe, wilson


def _cgm(y, g, clusters_list):
    """Cameron–Gelbach–Miller by hand: Σ over cluster kinds (±) of Σ_c (Σ_{i∈c} ψ_i)² with the
    difference's influence ψ, each with its small-sample factor G/(G−1)·(N−1)/(N−2)."""
    n_a, n_b = g.sum(), (~g).sum()
    resid = np.where(g, y - y[g].mean(), y - y[~g].mean())
    psi = np.where(g, resid / n_a, -resid / n_b)
    total = 0.0
    for sign, clusters in clusters_list:
        _, idx = np.unique(clusters, axis=0, return_inverse=True)
        idx = idx.ravel()
        groups = idx.max() + 1
        sums = np.bincount(idx, weights=psi)
        total += sign * groups / (groups - 1) * (len(y) - 1) / (len(y) - 2) * (sums**2).sum()
    return math.sqrt(total)


def test_clustered_difference_matches_a_hand_computed_two_way_variance():
    rng = np.random.default_rng(3)
    n = 300
    worker, image = rng.integers(0, 25, n), rng.integers(0, 60, n)
    g = rng.random(n) < 0.5
    y = (rng.random(n) < np.where(g, 0.6, 0.4)).astype(float)
    diff, low, high, p, clustering = clustered_difference(y, g, worker, image)
    assert clustering == "workers × images"
    assert diff == pytest.approx(y[g].mean() - y[~g].mean())
    pair = np.column_stack([worker, image])
    se = _cgm(y, g, [(1, worker[:, None]), (1, image[:, None]), (-1, pair)])
    df = min(25, 60) - 1
    assert p == pytest.approx(2 * stats.t.sf(abs(diff) / se, df), rel=1e-6)
    assert high - diff == pytest.approx(stats.t.ppf(0.975, df) * se, rel=1e-6)
    assert diff - low == pytest.approx(high - diff)
    # no image answered twice: one-way clustering on workers
    one = clustered_difference(y, g, worker, np.arange(n))
    assert one[4] == "workers"
    se1 = _cgm(y, g, [(1, worker[:, None])])
    assert one[3] == pytest.approx(2 * stats.t.sf(abs(diff) / se1, 24), rel=1e-6)


def test_clustered_difference_edges():
    g = np.array([True, True, False, False])
    assert math.isnan(clustered_difference(np.ones(4), np.ones(4, bool), [0, 1, 2, 3], [0] * 4)[0])
    same = clustered_difference(np.ones(4), g, [0, 1, 0, 1], [0, 1, 2, 3])
    assert same[0] == 0 and same[3] == 1.0
    apart = clustered_difference(np.array([1.0, 1, 0, 0]), g, [0, 1, 0, 1], [0, 1, 2, 3])
    assert apart[0] == 1 and apart[3] == 0.0
    one_worker = clustered_difference(np.array([1.0, 0, 0, 1]), g, [0] * 4, [0, 1, 2, 3])
    assert one_worker[0] == 0 and math.isnan(one_worker[3])


def test_newcombe_is_the_hybrid_wilson_interval():
    (la, ua), (lb, ub) = wilson(15, 20), wilson(5, 20)
    low, high = newcombe(15, 20, 5, 20)
    assert low == pytest.approx(0.5 - math.hypot(0.75 - la, ub - 0.25))
    assert high == pytest.approx(0.5 + math.hypot(ua - 0.75, 0.25 - lb))


def _nested_study(rng, *, workers=40, answers=25, sd=1.0, rate=0.5):
    """Two conditions of equal rate, each worker in one condition only (unpaired), worker
    effects of sd ``sd`` on the logit scale: what Fisher's test gets wrong."""
    worker = np.repeat(np.arange(workers), answers)
    condition = np.where(worker % 2 == 0, "a", "b")
    effect = rng.normal(0, sd, workers)[worker]
    change = rng.random(len(worker)) < expit(np.log(rate / (1 - rate)) + effect)
    n = len(worker)
    return Responses(
        condition=condition,
        worker=worker,
        image=np.arange(n),
        label=np.where(change, "8", "3"),
        original=np.full(n, 3),
        target=np.full(n, 8),
        is_attention=np.zeros(n, bool),
        attention_expected=np.full(n, -1),
    )


def test_null_false_positive_rate_with_worker_effects_of_sd_1():
    """≥ 300 simulated unpaired studies under the null: rejections at α = 0.05 ≤ 7%, in both
    layouts (workers nested in conditions, and crossed as the partition design)."""
    rng = np.random.default_rng(17)
    rejections = [
        compare(_nested_study(rng), rule=ExclusionRule.none())["pairs"][0]["p"] < 0.05
        for _ in range(300)
    ]
    assert np.mean(rejections) <= 0.07
    sd1 = 1 / (1 + math.pi**2 / 3)  # the ICC whose σ_w is 1
    crossed = planning.Design(rates={"a": 50, "b": 50}, answers_per_worker=25, icc=sd1)
    assert crossed.worker_sd == pytest.approx(1.0)
    assert planning.power(crossed, 40, simulations=300, seed=5)[("a", "b")] <= 0.07


def test_power_matches_the_plans_promise():
    """The plan's promised power, re-measured on independent simulated studies."""
    design = planning.Design(rates={"a": 40, "b": 60}, answers_per_worker=10, icc=0.2)
    plan = planning.plan(design, simulations=300, seed=1)
    assert plan.power[("a", "b")] >= 0.8
    again = planning.power(design, plan.workers, simulations=600, seed=99)[("a", "b")]
    assert abs(again - plan.power[("a", "b")]) <= 0.05
    # fewer participants than planned fall short: the search found the edge
    assert planning.power(design, plan.workers * 2 // 3, simulations=300, seed=1)[("a", "b")] < 0.8


def test_difference_is_the_difference_of_the_rates_shown():
    """Finding 2: 3 of 3 answers on image 0 change and 0 of 1 on image 1 (75%), against 0%:
    the per-image average gave 50; the difference must be 75 − 0."""
    rows = []
    for cond, labels in (("A", ["8", "8", "8", "3"]), ("B", ["3", "3", "3", "3"])):
        for k, (img, label) in enumerate(zip([0, 0, 0, 1], labels, strict=True)):
            rows.append(
                {
                    "condition": cond,
                    "worker": f"w{k}",
                    "image": img,
                    "label": label,
                    "original": 3,
                    "target": 8,
                    "is_attention": False,
                    "attention_expected": None,
                }
            )
    pair = compare(Responses.from_records(rows), rule=ExclusionRule.none())["pairs"][0]
    assert pair["change_pct_a"] == pytest.approx(75.0) and pair["change_pct_b"] == 0
    assert pair["difference_pct"] == pytest.approx(pair["change_pct_a"] - pair["change_pct_b"])
    low, high = pair["difference_interval"]
    assert low <= pair["difference_pct"] <= high


def test_infinite_odds_ratio_is_serialised_as_inf_not_null():
    """Finding 4: every answer of A changes, none of B: the odds ratio is ∞, not undefined."""
    rows = [
        {
            "condition": cond,
            "worker": f"{cond}{i}",
            "image": i if cond == "A" else 100 + i,
            "label": label,
            "original": 3,
            "target": 8,
            "is_attention": False,
            "attention_expected": None,
        }
        for cond, label in (("A", "8"), ("B", "3"))
        for i in range(6)
    ]
    out = analyse(Responses.from_records(rows), rule=ExclusionRule.none(), bootstrap=10)
    pair = out["comparisons"]["pairs"][0]
    assert pair["odds_ratio"] == "inf"
    json.dumps(out, allow_nan=False)
    both = [dict(r, label="8") for r in rows]  # 0/0: undefined, still null
    pair = analyse(Responses.from_records(both), rule=ExclusionRule.none(), bootstrap=10)
    assert pair["comparisons"]["pairs"][0]["odds_ratio"] is None


def test_pilot_icc_recovers_the_simulated_clustering():
    design = planning.Design(rates={"a": 30, "b": 60}, answers_per_worker=24, icc=0.25)
    pilot = planning.simulate(design, 300, np.random.default_rng(4))
    assert planning.pilot_icc(pilot) == pytest.approx(0.25, abs=0.06)
    flat = planning.simulate(
        planning.Design(rates={"a": 30, "b": 60}, answers_per_worker=24, icc=0.0),
        300,
        np.random.default_rng(4),
    )
    assert planning.pilot_icc(flat) < 0.05


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rates": {"a": 50}}, "at least two"),
        ({"rates": {"a": 50, "b": 100}}, "must be in"),
        ({"rates": {"a": 50, "b": 60}, "icc": 1.0}, "ICC"),
        ({"rates": {"a": 50, "b": 60}, "pairs": (("a", "c"),)}, "unknown pair"),
        ({"rates": {"a": 50, "b": 60, "c": 70}, "answers_per_worker": 2}, "cannot cover"),
    ],
)
def test_bad_designs_are_refused(kw, message):
    with pytest.raises(planning.PlanError, match=message):
        planning.Design(**kw)
