"""The human-study statistics against hand-computed values, textbook examples and scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from annotate.analysis.report import CORRECTION, FISHER, analyse, compare, rates
from annotate.analysis.responses import ExclusionRule, Responses, attention_summary, exclude
from annotate.analysis.stats import (
    fisher,
    fleiss_kappa,
    holm,
    krippendorff_alpha_nominal,
    rating_counts,
    wilson,
)
from annotate.labels import LABELS


def answer(condition, worker, image, label, original=3, target=8):
    """A study answer (the defaults: a 3 attacked towards 8)."""
    return {
        "condition": condition,
        "worker": worker,
        "image": image,
        "label": label,
        "original": original,
        "target": target,
        "is_attention": False,
        "attention_expected": None,
    }


def check(worker, label, expected=7, image=1000):
    """An attention-check answer."""
    return {
        "condition": "",
        "worker": worker,
        "image": image,
        "label": label,
        "original": None,
        "target": None,
        "is_attention": True,
        "attention_expected": expected,
    }


def hand_fixture() -> Responses:
    """Condition A: 10 answers by w1/w2 (4 change, 3 no change, 2 other, 1 '?');
    w3 fails its check and answers '8' (change) four times; a clean control B of A."""
    labels = ["8", "8", "8", "3", "3", "5", "?", "8", "3", "1"]
    rows = [answer("A", f"w{1 + i % 2}", i % 5, label) for i, label in enumerate(labels)]
    rows += [answer("A", "w3", i, "8") for i in range(4)]
    rows += [answer("B", "w1", 10 + i, label, target=None) for i, label in enumerate("3338")]
    rows += [check("w1", "7"), check("w2", "7"), check("w2", "7", image=1001), check("w3", "1")]
    return Responses.from_records(rows)


def simulated(
    *, workers: int, images: int, raters: int, p_change: float, seed: int, condition="A"
) -> list[dict]:
    """Random answers: each image seen by ``raters`` distinct workers."""
    rng = np.random.default_rng(seed)
    rows = []
    for image in range(images):
        for worker in rng.choice(workers, size=raters, replace=False):
            u = rng.random()
            label = "8" if u < p_change else "3" if u < p_change + 0.6 * (1 - p_change) else "?"
            rows.append(answer(condition, f"w{worker}", image, label))
    return rows


def by_condition(rows: list[dict]) -> dict:
    return {row["condition"]: row for row in rows}


def test_rates_match_hand_computed_values():
    row = by_condition(rates(hand_fixture(), rule=ExclusionRule(), bootstrap=200))["A"]
    assert (row["answers"], row["workers"], row["images"]) == (10, 2, 5)
    expected = {"change": 4, "no_change": 3, "other": 2, "unsure": 1}
    for name, count in expected.items():
        assert row[name]["count"] == count
        assert row[name]["pct"] == pytest.approx(10.0 * count)
        low, high = wilson(count, 10)
        assert row[name]["wilson"] == pytest.approx([100 * low, 100 * high])


def test_control_without_target_never_counts_as_change():
    row = by_condition(rates(hand_fixture(), rule=ExclusionRule(), bootstrap=50))["B"]
    assert row["change"]["count"] == 0
    assert row["no_change"]["count"] == 3 and row["other"]["count"] == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_four_rates_add_to_100(seed):
    rows = simulated(workers=12, images=30, raters=2, p_change=0.3, seed=seed)
    rows += simulated(workers=12, images=20, raters=1, p_change=0.7, seed=seed, condition="C")
    for row in rates(Responses.from_records(rows), rule=ExclusionRule.none(), bootstrap=50):
        outcomes = [row[name] for name in ("change", "no_change", "other", "unsure")]
        assert sum(o["pct"] for o in outcomes) == pytest.approx(100.0)
        assert sum(o["count"] for o in outcomes) == row["answers"]


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (1, 2), (57, 200), (200, 200)]
)
def test_wilson_matches_scipy(k, n):
    reference = stats.binomtest(k, n).proportion_ci(method="wilson")
    low, high = wilson(k, n)
    assert round(low, 4) == round(float(reference.low), 4)
    assert round(high, 4) == round(float(reference.high), 4)


def test_wilson_vectorised_and_empty():
    low, high = wilson(np.array([0, 3, 5]), np.array([10, 10, 0]))
    assert low[:2] == pytest.approx([wilson(0, 10)[0], wilson(3, 10)[0]])
    assert high[:2] == pytest.approx([wilson(0, 10)[1], wilson(3, 10)[1]])
    assert np.isnan(low[2]) and np.isnan(high[2])
    assert all(np.isnan(wilson(0, 0)))


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(counts[:, :4])  # now the raters per subject vary


def test_krippendorff_alpha_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
    # nominal values 1-5 with missing data; alpha = 0.743. None = no rating.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    unit = [u for obs in observers for u, v in enumerate(obs) if v is not None]
    value = [v for obs in observers for v in obs if v is not None]
    _, counts = rating_counts(np.array(unit), np.array(value), categories=6)
    assert krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)


def test_exclusion_is_applied_before_rates():
    responses = hand_fixture()
    kept = by_condition(rates(responses, rule=ExclusionRule.none(), bootstrap=50))["A"]
    assert (kept["answers"], kept["workers"], kept["change"]["count"]) == (14, 3, 8)
    assert kept["change"]["pct"] == pytest.approx(100 * 8 / 14)
    strict = by_condition(rates(responses, rule=ExclusionRule(), bootstrap=50))["A"]
    assert (strict["answers"], strict["workers"], strict["change"]["count"]) == (10, 2, 4)

    _, report = exclude(responses, rule=ExclusionRule())
    assert report["workers_excluded"] == 1 and report["answers_excluded"] == 4
    assert report["by_reason"] == {"too_few_checks": 0, "failed_checks": 1}
    reasons = {w["worker"]: w["reason"] for w in report["workers"]}
    assert reasons == {"w1": "", "w2": "", "w3": "failed_checks"}


def test_worker_without_checks_is_excluded_only_when_the_rule_asks():
    rows = [answer("A", "w1", 0, "8"), answer("A", "w2", 1, "3"), check("w1", "7")]
    responses = Responses.from_records(rows)
    _, report = exclude(responses, rule=ExclusionRule(min_checks=1))
    assert report["by_reason"]["too_few_checks"] == 1 and report["answers_excluded"] == 1
    _, report = exclude(responses, rule=ExclusionRule(min_checks=0))
    assert report["workers_excluded"] == 0


def test_attention_summary_counts_per_worker():
    summary = attention_summary(hand_fixture())
    assert summary["worker"].tolist() == ["w1", "w2", "w3"]
    assert summary["checks"].tolist() == [1, 2, 1]
    assert summary["passed"].tolist() == [1, 2, 0]
    assert summary["pass_rate"].tolist() == [1.0, 1.0, 0.0]


def test_bootstrap_contains_estimate_and_is_reproducible():
    responses = Responses.from_records(
        simulated(workers=15, images=60, raters=2, p_change=0.4, seed=3)
    )
    first = rates(responses, rule=ExclusionRule.none(), seed=7, bootstrap=400)[0]
    again = rates(responses, rule=ExclusionRule.none(), seed=7, bootstrap=400)[0]
    other = rates(responses, rule=ExclusionRule.none(), seed=8, bootstrap=400)[0]
    for name in ("change", "no_change", "unsure"):
        low, high = first[name]["bootstrap"]
        assert low < first[name]["pct"] < high
        assert again[name]["bootstrap"] == first[name]["bootstrap"]
    assert other["change"]["bootstrap"] != first["change"]["bootstrap"]


def test_bootstrap_widens_when_answers_cluster_by_worker():
    # Half the workers always pick the target, half never: answers are far from independent.
    rows = [
        answer("A", f"w{w}", 10 * w + i, "8" if w % 2 else "3")
        for w in range(20)
        for i in range(10)
    ]
    row = rates(Responses.from_records(rows), rule=ExclusionRule.none(), bootstrap=500)[0]
    boot = row["change"]["bootstrap"][1] - row["change"]["bootstrap"][0]
    assert boot > 1.5 * (row["change"]["wilson"][1] - row["change"]["wilson"][0])


def test_holm_on_a_known_example():
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = holm([0.5, np.nan, 0.2])
    assert np.isnan(with_nan[1])
    assert with_nan[[0, 2]] == pytest.approx([0.5, 0.4])
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("k_a", "n_a", "k_b", "n_b"), [(5, 10, 0, 12), (3, 40, 9, 35), (7, 7, 1, 9)]
)
def test_fisher_matches_scipy(k_a, n_a, k_b, n_b):
    reference = stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]])
    odds, p = fisher(k_a, n_a, k_b, n_b)
    assert p == pytest.approx(reference.pvalue)
    assert odds == pytest.approx(reference.statistic)


def test_compare_clusters_shared_workers_and_keeps_fisher_for_one_answer_each():
    # A and B on the same 20 images by 4 workers (A always the target, B never); C by other
    # workers on other images with 5 changes of 20, one answer per worker: independent.
    rows = [answer("A", f"w{i % 4}", i, "8") for i in range(20)]
    rows += [answer("B", f"w{i % 4}", i, "3") for i in range(20)]
    rows += [answer("C", f"c{i}", 100 + i, "8" if i < 5 else "3") for i in range(20)]
    rows += [answer("D", f"d{i}", 200 + i, "8" if i < 15 else "3") for i in range(20)]
    result = compare(Responses.from_records(rows), rule=ExclusionRule.none())
    assert result["correction"] == CORRECTION
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    ab = pairs["A", "B"]
    assert ab["method"].startswith("difference of rates, cluster-robust (workers × images)")
    assert ab["shared_images"] == 20 and ab["difference_pct"] == pytest.approx(100.0)
    assert ab["p"] < 1e-4
    cd = pairs["C", "D"]
    assert cd["method"] == FISHER and cd["shared_images"] == 0
    assert cd["p"] == pytest.approx(stats.fisher_exact([[5, 15], [15, 5]]).pvalue)
    assert cd["difference_pct"] == pytest.approx(-50.0)
    low, high = cd["difference_interval"]
    assert low < -50 < high < 0
    raw = [p["p"] for p in result["pairs"]]
    assert [p["p_holm"] for p in result["pairs"]] == pytest.approx(holm(raw).tolist())


def test_analyse_is_json_and_reports_everything():
    rows = [answer("A", f"w{w}", i, "8" if (i + w) % 3 else "3") for i in range(6) for w in (1, 2)]
    rows += [answer("A", "w3", i, "8") for i in range(3)]  # varying raters per image in A
    rows += [
        answer("B", f"w{w}", 50 + i, "3" if (i * w) % 4 else "5") for i in range(6) for w in (1, 2)
    ]
    rows += [answer("E", "w1", 80 + i, "3", target=None) for i in range(4)]  # one rater each
    rows += [check("w1", "7"), check("w2", "7"), check("w3", "7"), check("w4", "2")]
    rows += [answer("A", "w4", 0, "8")]
    meta = {"A": {"kind": "adversarial"}, "B": {"kind": "adversarial"}, "E": {"parent": "A"}}
    out = analyse(
        Responses.from_records(rows), rule=ExclusionRule(), seed=1, bootstrap=100, conditions=meta
    )
    json.dumps(out, allow_nan=False)
    assert [row["condition"] for row in out["conditions"]] == ["A", "E", "B"]
    assert out["exclusions"]["workers_excluded"] == 1
    assert out["exclusions"]["answers_excluded"] == 1
    rows_by = by_condition(out["conditions"])
    assert rows_by["E"]["parent"] == "A" and rows_by["A"]["answers"] == 15
    assert rows_by["A"]["agreement"]["method"] == "Krippendorff's alpha (nominal)"
    assert rows_by["B"]["agreement"]["method"] == "Fleiss' kappa"
    assert rows_by["E"]["agreement"]["value"] is None
    b = Responses.from_records([r for r in rows if r["condition"] == "B"])
    _, counts = rating_counts(b.image, b.codes, categories=len(LABELS))
    assert rows_by["B"]["agreement"]["value"] == pytest.approx(fleiss_kappa(counts))
    assert out["comparisons"]["correction"] == CORRECTION
    assert len(out["comparisons"]["pairs"]) == 3


def test_responses_validate_their_input():
    with pytest.raises(ValueError, match="labels must be one of"):
        Responses.from_records([answer("A", "w1", 0, "x")])
    with pytest.raises(ValueError, match="one entry per answer"):
        Responses(
            condition=[1, 1],
            worker=["w"],
            image=[0, 1],
            label=["3", "8"],
            original=[3, 3],
            target=[8, 8],
            is_attention=[False, False],
            attention_expected=[-1, -1],
        )


def test_from_columns_ignores_extra_keys_and_empty_study_analyses():
    empty = {
        "condition": np.zeros(0, np.int64),
        "worker": np.array([], dtype=str),
        "image": np.zeros(0, np.int64),
        "label": np.array([], dtype=str),
        "original": np.zeros(0, np.int64),
        "target": np.zeros(0, np.int64),
        "is_attention": np.zeros(0, bool),
        "attention_expected": np.zeros(0, np.int64),
        "simulated": np.zeros(0, bool),
    }
    out = analyse(Responses.from_columns(empty), rule=ExclusionRule(), bootstrap=10)
    json.dumps(out, allow_nan=False)
    assert out["conditions"] == [] and out["comparisons"]["pairs"] == []
    assert out["exclusions"]["workers_total"] == 0
