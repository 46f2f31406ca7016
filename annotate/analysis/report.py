"""Human-study statistics (thesis Table 4.2) as pure functions over numpy arrays.

Per condition: "% change" (labelled with the attack's target), "% no change" (the original
digit), "% other digit" and "% ?" with Wilson and two-way cluster-bootstrap intervals, after a
pre-declared attention-check exclusion rule; pairwise tests with Holm's correction; Fleiss' κ or
Krippendorff's α. No Django here: a selector builds :class:`Responses`, :func:`analyse` returns
one JSON-serialisable dict.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from itertools import combinations
from typing import Any

import numpy as np

from annotate.analysis.responses import (
    OUTCOMES,
    ExclusionRule,
    Responses,
    exclude,
    included_answers,
)
from annotate.analysis.stats import (
    cluster_bootstrap,
    clustered_difference,
    fisher,
    fleiss_kappa,
    holm,
    krippendorff_alpha_nominal,
    newcombe,
    rating_counts,
    wilson,
)
from annotate.labels import LABELS

# Part of every cached result's key: bump when the numbers or their layout change.
# 2: clustered comparisons with the difference of the shown rates and its interval.
ANALYSIS_VERSION = 2
CORRECTION = "Holm-Bonferroni (step-down, family = all pairs of conditions)"
CLUSTERED = "difference of rates, cluster-robust ({clustering}) standard error, t test (two-sided)"
FISHER = (
    "Fisher's exact test on change / not-change counts (two-sided; one answer per worker), "
    "Newcombe interval"
)


# --- rates ------------------------------------------------------------------------------------


def _pct(x: Any) -> Any:
    return np.asarray(x, float) * 100.0


def _condition_rates(
    included: Responses, *, replicates: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Counts, the four rates and their intervals for one condition's included answers."""
    n = len(included)
    outcome = included.outcomes()
    counts = np.bincount(outcome, minlength=len(OUTCOMES))
    low, high = wilson(counts, n)
    boot = cluster_bootstrap(
        outcome,
        included.worker,
        included.image,
        categories=len(OUTCOMES),
        replicates=replicates,
        rng=rng,
    )
    row: dict[str, Any] = {
        "answers": n,
        "workers": len(np.unique(included.worker)),
        "images": len(np.unique(included.image)),
    }
    for j, name in enumerate(OUTCOMES):
        row[name] = {
            "count": counts[j],
            "pct": _pct(counts[j] / n) if n else math.nan,
            "wilson": [_pct(low[j]), _pct(high[j])],
            "bootstrap": [_pct(boot[j, 0]), _pct(boot[j, 1])],
        }
    return row


def _conditions(responses: Responses) -> np.ndarray:
    """Every condition code that has study answers (before exclusion), sorted."""
    return np.unique(responses.condition[~responses.is_attention])


def _streams(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def rates(
    responses: Responses, *, rule: ExclusionRule, seed: int = 0, bootstrap: int = 1000
) -> list[dict[str, Any]]:
    """Per condition (sorted codes): answers, workers, images and the four rates in percent,
    each with a Wilson 95% interval and a two-way cluster-bootstrap 95% interval.

    ``rule`` is applied first; a condition whose answers were all excluded has nan rates.
    """
    marked, _ = exclude(responses, rule=rule)
    return _rates(marked, seed=seed, bootstrap=bootstrap)


def _rates(marked: Responses, *, seed: int, bootstrap: int) -> list[dict[str, Any]]:
    codes = _conditions(marked)
    included = included_answers(marked)
    rows = []
    for code, rng in zip(codes, _streams(seed, len(codes)), strict=True):
        row = _condition_rates(
            included.take(included.condition == code), replicates=bootstrap, rng=rng
        )
        rows.append({"condition": code, **row})
    return rows


# --- comparisons ------------------------------------------------------------------------------


def _independent(part_a: Responses, part_b: Responses) -> bool:
    """Whether no worker gave more than one answer in the pair: independent by design."""
    workers = np.concatenate([part_a.worker, part_b.worker])
    return len(np.unique(workers)) == len(workers)


def _odds_ratio(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Sample odds ratio of change, a against b: inf when only b has a zero cell, nan if 0/0."""
    top, bottom = k_a * (n_b - k_b), (n_a - k_a) * k_b
    if bottom == 0:
        return math.inf if top > 0 else math.nan
    return top / bottom


def compare(responses: Responses, *, rule: ExclusionRule, level: float = 0.95) -> dict[str, Any]:
    """Every pair of conditions: the difference of their "% change" rates (as shown per
    condition) with its interval, a test that respects clustering, and Holm-adjusted p-values.

    Answers of one worker are not independent (nor those of one image rated by several):
    a pair is tested with the two-way cluster-robust difference (:func:`clustered_difference`)
    unless no worker answered twice in it, where answers are independent by design and Fisher's
    exact test (with Newcombe's interval) applies.
    """
    marked, _ = exclude(responses, rule=rule)
    return _compare(marked, level=level)


def _compare(marked: Responses, *, level: float = 0.95) -> dict[str, Any]:
    codes = _conditions(marked)
    included = included_answers(marked)
    parts = {code: included.take(included.condition == code) for code in codes}
    change = {code: part.outcomes() == 0 for code, part in parts.items()}
    rows = []
    for a, b in combinations(codes, 2):
        k_a, n_a = int(change[a].sum()), len(parts[a])
        k_b, n_b = int(change[b].sum()), len(parts[b])
        row: dict[str, Any] = {
            "a": a,
            "b": b,
            "answers_a": n_a,
            "answers_b": n_b,
            "shared_images": len(np.intersect1d(parts[a].image, parts[b].image)),
            "change_pct_a": _pct(k_a / n_a) if n_a else math.nan,
            "change_pct_b": _pct(k_b / n_b) if n_b else math.nan,
            "odds_ratio": _odds_ratio(k_a, n_a, k_b, n_b),
        }
        if n_a and n_b and _independent(parts[a], parts[b]):
            _, p = fisher(k_a, n_a, k_b, n_b)
            diff = k_a / n_a - k_b / n_b
            low, high = newcombe(k_a, n_a, k_b, n_b)
            method = FISHER
        else:
            diff, low, high, p, clustering = clustered_difference(
                np.concatenate([change[a], change[b]]),
                np.repeat([True, False], [n_a, n_b]),
                np.concatenate([parts[a].worker, parts[b].worker]),
                np.concatenate([parts[a].image, parts[b].image]),
                level=level,
            )
            method = CLUSTERED.format(clustering=clustering or "workers")
        row |= {
            "method": method,
            "difference_pct": _pct(diff),
            "difference_interval": [_pct(low), _pct(high)],
            "p": p,
        }
        rows.append(row)
    adjusted = holm([row["p"] for row in rows])
    for row, p_holm in zip(rows, adjusted, strict=True):
        row["p_holm"] = p_holm
    return {"correction": CORRECTION, "level": level, "pairs": rows}


# --- agreement --------------------------------------------------------------------------------


def agreement(responses: Responses, *, rule: ExclusionRule) -> list[dict[str, Any]]:
    """Per condition: Fleiss' κ when every image has the same number (≥ 2) of raters,
    Krippendorff's α (nominal, 11 labels) when it varies, nothing with one rater per image."""
    marked, _ = exclude(responses, rule=rule)
    return _agreement(marked)


def _agreement(marked: Responses) -> list[dict[str, Any]]:
    included = included_answers(marked)
    rows = []
    for code in _conditions(marked):
        part = included.take(included.condition == code)
        _, counts = rating_counts(part.image, part.codes, categories=len(LABELS))
        raters = counts.sum(axis=1)
        row: dict[str, Any] = {
            "condition": code,
            "images": len(raters),
            "raters_min": int(raters.min()) if len(raters) else 0,
            "raters_max": int(raters.max()) if len(raters) else 0,
        }
        if len(raters) == 0 or raters.max() < 2:
            row |= {"method": None, "value": None, "note": "fewer than two raters per image"}
        elif raters.min() == raters.max():
            row |= {"method": "Fleiss' kappa", "value": fleiss_kappa(counts)}
        else:
            row |= {
                "method": "Krippendorff's alpha (nominal)",
                "value": krippendorff_alpha_nominal(counts),
            }
        rows.append(row)
    return rows


# --- everything at once -----------------------------------------------------------------------


def _order(codes: list[Any], conditions: Mapping[Hashable, Mapping[str, Any]] | None) -> list:
    """The metadata's order (else sorted), each control right after its ``parent`` condition."""
    if not conditions:
        return codes
    known = [c for c in conditions if c in codes] + [c for c in codes if c not in conditions]
    parents = {c: conditions.get(c, {}).get("parent") for c in known}
    ordered: list[Any] = []

    def place(code: Any) -> None:
        ordered.append(code)
        for child in known:
            if parents[child] == code and child not in ordered:
                place(child)

    for code in known:
        if code not in ordered and parents[code] not in known:
            place(code)
    return ordered + [c for c in known if c not in ordered]


def _native(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python; nan (undefined) to None, ±inf to the
    strings "inf" and "-inf" (JSON has neither, and the two must stay apart)."""
    if isinstance(value, dict):
        return {str(_native(k)): _native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_native(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_native(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def analyse(
    responses: Responses,
    *,
    rule: ExclusionRule,
    seed: int = 0,
    bootstrap: int = 1000,
    conditions: Mapping[Hashable, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole analysis as one JSON-serialisable dict (nan → None).

    Keys: ``exclusions`` (the rule, counts and reasons, per-worker attention results),
    ``conditions`` (rates, intervals and agreement per condition, controls right after their
    ``parent``), ``comparisons`` (pairwise differences with intervals and clustered tests,
    Holm-adjusted). nan is None, ±inf the strings "inf" / "-inf". ``conditions`` may carry
    per-condition metadata (name, kind, parent code) that is copied into the rows.
    """
    marked, report = exclude(responses, rule=rule)
    rows = {row["condition"]: row for row in _rates(marked, seed=seed, bootstrap=bootstrap)}
    for row in _agreement(marked):
        rows[row.pop("condition")]["agreement"] = row
    ordered = _order(list(rows), conditions)
    meta = conditions or {}
    result = {
        "exclusions": report,
        "conditions": [{**dict(meta.get(code, {})), **rows[code]} for code in ordered],
        "comparisons": _compare(marked),
        "bootstrap": {
            "replicates": bootstrap,
            "method": "two-way cluster (workers × images) percentile bootstrap, 95%",
            "seed": seed,
        },
        "interval": "Wilson score 95%",
    }
    return _native(result)
