"""Human-study statistics (thesis Table 4.2) as pure functions over numpy arrays.

Per condition: "% change" (labelled with the attack's target), "% no change" (the original
digit), "% other digit" and "% ?" with Wilson and two-way cluster-bootstrap intervals, after a
pre-declared attention-check exclusion rule; pairwise tests with Holm's correction; Fleiss' κ or
Krippendorff's α. No Django here: a selector builds :class:`Responses`, :func:`analyse` returns
one JSON-serialisable dict.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

LABELS = tuple("0123456789?")
UNSURE = LABELS.index("?")  # category code of '?'
OUTCOMES = ("change", "no_change", "other", "unsure")  # exclusive, in this order of precedence
Z95 = 1.959963984540054  # two-sided 95% normal quantile
CORRECTION = "Holm-Bonferroni (step-down, family = all pairs of conditions)"
PAIRED = "paired sign-flip permutation test over shared source images (two-sided)"
FISHER = "Fisher's exact test on change / not-change counts (two-sided)"


# --- the responses table ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Responses:
    """One row per answer as parallel arrays; attention-check rows included and flagged.

    ``target`` is -1 where the stimulus has none (clean controls); ``original`` and ``condition``
    are ignored on attention rows, ``attention_expected`` (the check's true digit) elsewhere.
    ``worker_excluded`` (per answer) is filled in by :func:`exclude`.
    """

    condition: np.ndarray
    worker: np.ndarray
    image: np.ndarray
    label: np.ndarray
    original: np.ndarray
    target: np.ndarray
    is_attention: np.ndarray
    attention_expected: np.ndarray
    worker_excluded: np.ndarray | None = None
    codes: np.ndarray = field(init=False, repr=False)  # label as 0..9, '?' as 10

    def __post_init__(self) -> None:
        kinds = {
            "original": np.int64,
            "target": np.int64,
            "attention_expected": np.int64,
            "is_attention": bool,
            "worker_excluded": bool,
        }
        n = None
        for f in fields(self):
            if not f.init or getattr(self, f.name) is None:
                continue
            array = np.asarray(getattr(self, f.name), dtype=kinds.get(f.name))
            if array.ndim != 1 or (n is not None and len(array) != n):
                raise ValueError(f"Responses.{f.name} must be 1-D with one entry per answer")
            n = len(array)
            object.__setattr__(self, f.name, array)
        label = self.label.astype(str)
        codes = np.full(len(label), -1, dtype=np.int64)
        for code, text in enumerate(LABELS):
            codes[label == text] = code
        if (codes < 0).any():
            bad = sorted(set(label[codes < 0].tolist()))[:5]
            raise ValueError(f"labels must be one of {''.join(LABELS)!r}, got {bad}")
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "codes", codes)

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Responses:
        """Build from dicts with the field names (``None`` target/original/expected → -1)."""
        rows = list(records)
        names = [f.name for f in fields(cls) if f.init and f.name != "worker_excluded"]
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for row in rows:
            for name in names:
                value = row[name]
                if value is None and name in ("original", "target", "attention_expected"):
                    value = -1
                columns[name].append(value)
        empty = {"label": np.array([], dtype=str)} if not rows else {}
        return cls(**{**columns, **empty})

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> Responses:
        """Build from aligned columns keyed by field name; other keys (``simulated``) ignored."""
        names = [f.name for f in fields(cls) if f.init and f.name != "worker_excluded"]
        return cls(**{name: columns[name] for name in names})

    def take(self, mask: np.ndarray) -> Responses:
        """The rows where ``mask`` is true."""
        kept = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[mask]
            for f in fields(self)
            if f.init
        }
        return Responses(**kept)

    def outcomes(self) -> np.ndarray:
        """Per answer, an index into :data:`OUTCOMES` (change wins over no change)."""
        change = (self.target >= 0) & (self.codes == self.target)
        no_change = ~change & (self.codes == self.original)
        unsure = self.codes == UNSURE
        return np.select([change, no_change, unsure], [0, 1, 3], default=2)


# --- attention checks and exclusion -----------------------------------------------------------


@dataclass(frozen=True)
class ExclusionRule:
    """A pre-declared rule: exclude a worker who saw fewer than ``min_checks`` attention checks
    or passed a share of them below ``min_pass_rate``; applied before every number."""

    min_pass_rate: float = 1.0
    min_checks: int = 1

    @classmethod
    def none(cls) -> ExclusionRule:
        """Exclude nobody (for sensitivity analyses; say so when reporting)."""
        return cls(min_pass_rate=0.0, min_checks=0)

    def describe(self) -> str:
        """The rule in one sentence, for reports."""
        return (
            f"exclude a worker with fewer than {self.min_checks} attention checks "
            f"or an attention-check pass rate below {self.min_pass_rate:.0%}"
        )


def attention_summary(responses: Responses) -> dict[str, np.ndarray]:
    """Per worker (sorted ids): attention checks seen, passed, and pass rate (nan if none)."""
    workers, index = np.unique(responses.worker, return_inverse=True)
    check = responses.is_attention
    passed = check & (responses.codes == responses.attention_expected)
    seen = np.bincount(index, weights=check, minlength=len(workers)).astype(np.int64)
    ok = np.bincount(index, weights=passed, minlength=len(workers)).astype(np.int64)
    rate = np.full(len(workers), np.nan)
    np.divide(ok, seen, out=rate, where=seen > 0)
    return {"worker": workers, "checks": seen, "passed": ok, "pass_rate": rate}


def exclusion_reasons(
    checks: np.ndarray, passed: np.ndarray, *, rule: ExclusionRule
) -> tuple[np.ndarray, np.ndarray]:
    """Per worker, from checks seen and passed: (too few checks, failed checks) under ``rule``."""
    checks = np.asarray(checks, dtype=np.int64)
    rate = np.full(len(checks), np.nan)
    np.divide(np.asarray(passed, dtype=np.float64), checks, out=rate, where=checks > 0)
    few = checks < rule.min_checks
    failed = ~few & (checks > 0) & (rate < rule.min_pass_rate - 1e-12)
    return few, failed


def exclude(responses: Responses, *, rule: ExclusionRule) -> tuple[Responses, dict[str, Any]]:
    """Apply ``rule``: the responses with ``worker_excluded`` set, and a report of who and why."""
    summary = attention_summary(responses)
    few, failed = exclusion_reasons(summary["checks"], summary["passed"], rule=rule)
    excluded_worker = few | failed
    reason = np.where(few, "too_few_checks", np.where(failed, "failed_checks", ""))
    _, index = np.unique(responses.worker, return_inverse=True)
    excluded = excluded_worker[index] if len(responses) else np.zeros(0, bool)
    studied = ~responses.is_attention
    report = {
        "rule": {**asdict(rule), "description": rule.describe()},
        "workers_total": int(len(summary["worker"])),
        "workers_excluded": int(excluded_worker.sum()),
        "answers_total": int(studied.sum()),
        "answers_excluded": int((studied & excluded).sum()),
        "by_reason": {
            "too_few_checks": int(few.sum()),
            "failed_checks": int(failed.sum()),
        },
        "workers": [
            {
                "worker": worker,
                "checks": checks,
                "passed": passed,
                "pass_rate": rate,
                "excluded": bool(out),
                "reason": why,
            }
            for worker, checks, passed, rate, out, why in zip(
                summary["worker"],
                summary["checks"],
                summary["passed"],
                summary["pass_rate"],
                excluded_worker,
                reason,
                strict=True,
            )
        ],
    }
    marked = Responses(
        **{f.name: getattr(responses, f.name) for f in fields(responses) if f.init}
        | {"worker_excluded": excluded}
    )
    return marked, report


def _included(responses: Responses) -> Responses:
    """The study answers (no attention checks) of workers the rule kept."""
    if responses.worker_excluded is None:
        raise ValueError("apply an ExclusionRule with exclude() first")
    return responses.take(~responses.is_attention & ~responses.worker_excluded)


# --- intervals --------------------------------------------------------------------------------


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
    included = _included(marked)
    rows = []
    for code, rng in zip(codes, _streams(seed, len(codes)), strict=True):
        row = _condition_rates(
            included.take(included.condition == code), replicates=bootstrap, rng=rng
        )
        rows.append({"condition": code, **row})
    return rows


# --- comparisons ------------------------------------------------------------------------------


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


def paired_permutation(
    differences: np.ndarray, *, permutations: int = 10_000, rng: np.random.Generator
) -> float:
    """Two-sided sign-flip permutation p-value for mean(differences) = 0.

    Exchanging the two conditions within a source image flips the sign of its difference;
    exact over all 2^n flips when n ≤ 16, else Monte Carlo with (1 + hits) / (1 + draws).
    """
    d = np.asarray(differences, float)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= 16:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        means = np.abs((1 - 2 * bits) @ d) / n
        return float(np.mean(means >= observed - tol))
    hits = 0
    chunk = max(1, 2_000_000 // n)
    for start in range(0, permutations, chunk):
        b = min(chunk, permutations - start)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(b, n), dtype=np.int8)
        hits += int((np.abs(signs @ d) / n >= observed - tol).sum())
    return (1 + hits) / (1 + permutations)


def fisher(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """Fisher's exact test of k_a/n_a against k_b/n_b: (sample odds ratio, two-sided p)."""
    if n_a == 0 or n_b == 0:
        return math.nan, math.nan
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.fisher_exact(table, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def _per_image_change(included: Responses) -> tuple[np.ndarray, np.ndarray]:
    """Images (sorted) and the share of their answers labelled with the target."""
    images, index = np.unique(included.image, return_inverse=True)
    change = included.outcomes() == 0
    hits = np.bincount(index, weights=change, minlength=len(images))
    return images, hits / np.bincount(index, minlength=len(images))


def compare(
    responses: Responses,
    *,
    rule: ExclusionRule,
    seed: int = 0,
    permutations: int = 10_000,
    min_shared: float = 0.5,
) -> dict[str, Any]:
    """Every pair of conditions: difference in % change, a test, and Holm-adjusted p-values.

    Paired permutation test when the two share at least ``min_shared`` of the smaller one's
    source images (the full design shares all, the partition design none), over the shared
    images only; else Fisher's exact test on all answers.
    """
    marked, _ = exclude(responses, rule=rule)
    return _compare(marked, seed=seed, permutations=permutations, min_shared=min_shared)


def _compare(
    marked: Responses, *, seed: int, permutations: int, min_shared: float
) -> dict[str, Any]:
    codes = _conditions(marked)
    included = _included(marked)
    parts = {code: included.take(included.condition == code) for code in codes}
    per_image = {code: _per_image_change(part) for code, part in parts.items()}
    pairs = list(combinations(codes, 2))
    rows = []
    for (a, b), rng in zip(pairs, _streams(seed, len(pairs)), strict=True):
        (img_a, ch_a), (img_b, ch_b) = per_image[a], per_image[b]
        shared, ia, ib = np.intersect1d(img_a, img_b, return_indices=True)
        smaller = min(len(img_a), len(img_b))
        k_a, n_a = int((parts[a].outcomes() == 0).sum()), len(parts[a])
        k_b, n_b = int((parts[b].outcomes() == 0).sum()), len(parts[b])
        row: dict[str, Any] = {
            "a": a,
            "b": b,
            "shared_images": len(shared),
            "change_pct_a": _pct(k_a / n_a) if n_a else math.nan,
            "change_pct_b": _pct(k_b / n_b) if n_b else math.nan,
        }
        if smaller and len(shared) >= max(1.0, min_shared * smaller):
            d = ch_a[ia] - ch_b[ib]
            p = paired_permutation(d, permutations=permutations, rng=rng)
            row |= {
                "method": PAIRED,
                "difference_pct": _pct(d.mean()),
                "odds_ratio": None,
                "permutations": permutations if len(d) > 16 else f"exact (2^{len(d)})",
            }
        else:
            odds, p = fisher(k_a, n_a, k_b, n_b)
            diff = _pct(k_a / n_a - k_b / n_b) if n_a and n_b else math.nan
            row |= {"method": FISHER, "difference_pct": diff, "odds_ratio": odds}
        row["p"] = p
        rows.append(row)
    adjusted = holm([row["p"] for row in rows])
    for row, p_holm in zip(rows, adjusted, strict=True):
        row["p_holm"] = p_holm
    return {"correction": CORRECTION, "pairs": rows}


# --- agreement --------------------------------------------------------------------------------


def rating_counts(unit: np.ndarray, codes: np.ndarray, *, categories: int = len(LABELS)):
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


def agreement(responses: Responses, *, rule: ExclusionRule) -> list[dict[str, Any]]:
    """Per condition: Fleiss' κ when every image has the same number (≥ 2) of raters,
    Krippendorff's α (nominal, 11 labels) when it varies, nothing with one rater per image."""
    marked, _ = exclude(responses, rule=rule)
    return _agreement(marked)


def _agreement(marked: Responses) -> list[dict[str, Any]]:
    included = _included(marked)
    rows = []
    for code in _conditions(marked):
        part = included.take(included.condition == code)
        _, counts = rating_counts(part.image, part.codes)
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
    """JSON-ready: numpy scalars and arrays to Python, nan and inf to None."""
    if isinstance(value, dict):
        return {str(_native(k)): _native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_native(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_native(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def analyse(
    responses: Responses,
    *,
    rule: ExclusionRule,
    seed: int = 0,
    bootstrap: int = 1000,
    permutations: int = 10_000,
    conditions: Mapping[Hashable, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole analysis as one JSON-serialisable dict (nan → None).

    Keys: ``exclusions`` (the rule, counts and reasons, per-worker attention results),
    ``conditions`` (rates, intervals and agreement per condition, controls right after their
    ``parent``), ``comparisons`` (pairwise tests, Holm-adjusted). ``conditions`` may carry
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
        "comparisons": _compare(marked, seed=seed, permutations=permutations, min_shared=0.5),
        "bootstrap": {
            "replicates": bootstrap,
            "method": "two-way cluster (workers × images) percentile bootstrap, 95%",
            "seed": seed,
        },
        "interval": "Wilson score 95%",
    }
    return _native(result)
