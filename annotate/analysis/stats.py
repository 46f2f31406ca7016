"""Textbook statistics, vectorised over numpy arrays (pure: no Django, no study concepts).

Wilson intervals, the two-way cluster bootstrap, a cluster-robust difference of two rates,
Newcombe's interval, Holm's correction, Fisher's exact test, Fleiss' κ and Krippendorff's α —
each checked in the tests against a reference implementation or a published example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import statsmodels.api as sm
from scipy import stats

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(k: Any, n: Any, z: float = Z95) -> tuple[Any, Any]:
    """Wilson score interval for k successes in n trials (vectorised); n = 0 gives nan."""
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k, float), np.asarray(n, float))
    safe = np.where(n_arr > 0, n_arr, 1.0)
    p = k_arr / safe
    denom = 1.0 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z / denom * np.sqrt(np.clip(p * (1 - p), 0, None) / safe + z * z / (4 * safe * safe))
    low = np.where(n_arr > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n_arr > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def cluster_bootstrap(
    outcome: np.ndarray,
    worker: np.ndarray,
    image: np.ndarray,
    *,
    categories: int,
    replicates: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> np.ndarray:
    """Percentile intervals (categories × 2, proportions) for the share of each outcome.

    Two-way ("pigeonhole", Owen 2007) cluster bootstrap: workers and images are resampled
    independently with replacement and an answer weighs (draws of its worker) × (draws of its
    image); mildly conservative. Replicates in which no answer survives are dropped.
    """
    n = len(outcome)
    if n == 0 or replicates < 1:
        return np.full((categories, 2), np.nan)
    _, w_index = np.unique(worker, return_inverse=True)
    _, i_index = np.unique(image, return_inverse=True)
    n_w, n_i = int(w_index.max()) + 1, int(i_index.max()) + 1
    onehot = np.eye(categories)[outcome]
    shares = np.full((replicates, categories), np.nan)
    chunk = max(1, 2_000_000 // n)  # bounds the (chunk × answers) weight matrix
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        w_draws = rng.multinomial(n_w, np.full(n_w, 1.0 / n_w), size=b)
        i_draws = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=b)
        weight = (w_draws[:, w_index] * i_draws[:, i_index]).astype(float)
        total = weight.sum(axis=1)
        ok = total > 0
        shares[start : start + b][ok] = (weight[ok] @ onehot) / total[ok, None]
    kept = shares[~np.isnan(shares[:, 0])]
    if len(kept) == 0:
        return np.full((categories, 2), np.nan)
    tail = 50 * (1 - level)
    return np.percentile(kept, [tail, 100 - tail], axis=0).T


def clustered_difference(
    success: np.ndarray,
    group: np.ndarray,
    worker: np.ndarray,
    image: np.ndarray,
    *,
    level: float = 0.95,
) -> tuple[float, float, float, float, str]:
    """Difference of two answer rates (group True minus False) with a cluster-robust interval
    and test: (difference, low, high, two-sided p, clustering).

    The least-squares fit of the answers on the group indicator gives the difference of the
    two rates; its variance is Cameron, Gelbach & Miller's (2011) two-way cluster-robust one,
    V_workers + V_images − V_answers (statsmodels), so answers of one worker, or of one image,
    are not counted as independent. Where no image has two answers the image term equals the
    answer term and this is the one-way worker clustering. t reference with (fewest clusters −
    1) degrees of freedom. A worker or image in both groups carries its effect into both,
    where it cancels, as a paired design should.
    """
    success = np.asarray(success, float)
    group = np.asarray(group, bool)
    if not group.any() or group.all():
        return math.nan, math.nan, math.nan, math.nan, ""
    diff = float(success[group].mean() - success[~group].mean())
    _, w_index = np.unique(worker, return_inverse=True)
    _, i_index = np.unique(image, return_inverse=True)
    two_way = len(np.unique(i_index)) < len(i_index)
    clusters = np.column_stack([w_index, i_index]) if two_way else w_index
    clustering = "workers × images" if two_way else "workers"
    if min(int(w_index.max()), int(i_index.max()) if two_way else 1) < 1:
        return diff, math.nan, math.nan, math.nan, clustering  # one cluster: no variance
    design = np.column_stack([np.ones(len(success)), group.astype(float)])

    def fit_on(groups: np.ndarray) -> Any:
        with np.errstate(invalid="ignore", divide="ignore"):
            fit = sm.OLS(success, design).fit(
                cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
            )
            _ = fit.bse, fit.pvalues  # cached here, where a negative variance is not an error
        return fit

    fit = fit_on(clusters)
    if not np.isfinite(fit.bse[1]):  # V_w + V_i − V_answers < 0 can happen: the larger one-way
        by_worker, by_image = fit_on(w_index), fit_on(i_index)
        fit, clustering = (
            (by_worker, "workers") if by_worker.bse[1] >= by_image.bse[1] else (by_image, "images")
        )
    se = float(fit.bse[1])
    if not se > 1e-12:  # every answer of each group alike: no variation to test against
        return diff, diff, diff, (0.0 if abs(diff) > 1e-12 else 1.0), clustering
    half = float(stats.t.ppf(0.5 + level / 2, fit.df_resid_inference)) * se
    return diff, diff - half, diff + half, float(fit.pvalues[1]), clustering


def newcombe(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """Newcombe's (1998, method 10) interval for k_a/n_a − k_b/n_b from the Wilson intervals."""
    if n_a == 0 or n_b == 0:
        return math.nan, math.nan
    p_a, p_b = k_a / n_a, k_b / n_b
    (l_a, u_a), (l_b, u_b) = wilson(k_a, n_a), wilson(k_b, n_b)
    d = p_a - p_b
    return d - math.hypot(p_a - l_a, u_b - p_b), d + math.hypot(u_a - p_a, p_b - l_b)


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values; nan entries stay nan and are not in the family."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def fisher(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """Fisher's exact test of k_a/n_a against k_b/n_b: (sample odds ratio, two-sided p)."""
    if n_a == 0 or n_b == 0:
        return math.nan, math.nan
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.fisher_exact(table, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def rating_counts(unit: np.ndarray, codes: np.ndarray, *, categories: int):
    """Units (sorted) and their units × categories matrix of rating counts."""
    units, index = np.unique(unit, return_inverse=True)
    counts = np.zeros((len(units), categories), dtype=np.int64)
    np.add.at(counts, (index, np.asarray(codes)), 1)
    return units, counts


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' κ (1971) from units × categories counts, every unit with the same raters ≥ 2."""
    counts = np.asarray(counts, float)
    raters = counts.sum(axis=1)
    if len(counts) == 0 or raters.min() < 2 or (raters != raters[0]).any():
        raise ValueError("Fleiss' kappa needs the same number (≥ 2) of raters on every unit")
    m = raters[0]
    share = counts.sum(axis=0) / counts.sum()
    observed = ((counts * (counts - 1)).sum(axis=1) / (m * (m - 1))).mean()
    expected = float((share**2).sum())
    if expected >= 1.0 - 1e-12:
        return math.nan  # one category only: chance agreement is perfect, κ undefined
    return float((observed - expected) / (1.0 - expected))


def krippendorff_alpha_nominal(counts: np.ndarray) -> float:
    """Krippendorff's α for nominal data from units × categories counts (any raters per unit).

    Units with fewer than two ratings are not pairable and drop out (Krippendorff 2011).
    """
    counts = np.asarray(counts, float)
    m = counts.sum(axis=1)
    counts = counts[m >= 2]
    m = m[m >= 2]
    if len(counts) == 0:
        return math.nan
    coincide = (counts * (counts - 1)).sum(axis=1) / (m - 1)  # Σ_c o_cc per unit
    n_c = counts.sum(axis=0)
    n = n_c.sum()
    disagree_expected = n * n - (n_c**2).sum()
    if disagree_expected <= 0:
        return math.nan  # one category only
    return float(1.0 - (n - 1) * (n - coincide.sum()) / disagree_expected)
