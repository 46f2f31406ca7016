"""The responses table the analysis reads, and who is excluded from it.

One row per answer as parallel arrays (a selector builds it from the database; tests build it
by hand); attention-check answers are rows too, flagged, and decide who is excluded under a
pre-declared :class:`ExclusionRule`. Pure: no Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from annotate.labels import LABELS, MAX_DIGIT, UNSURE

UNSURE_CODE = LABELS.index(UNSURE)  # category code of '?'
OUTCOMES = ("change", "no_change", "other", "unsure")  # exclusive, in this order of precedence


# --- the responses table ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Responses:
    """One row per answer as parallel arrays; attention-check rows included and flagged.

    ``target`` is -1 where the stimulus has none (clean controls); ``original`` and ``condition``
    are ignored on attention rows, ``attention_expected`` (the check's true digit) elsewhere.
    Label fields are digits 0–9 (-1 only where ignored or absent); anything else is refused,
    since 10 is the code of '?'. ``worker_excluded`` (per answer) is filled in by :func:`exclude`.
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
        self._check_digits()

    def _check_digits(self) -> None:
        """Refuse label fields outside 0–9 (-1 only where the row may lack one)."""
        attention = self.is_attention
        for name, required, rule in (
            ("original", ~attention, "on study answers (-1 only on attention checks)"),
            ("target", np.zeros_like(attention), "or -1 where the stimulus has none"),
            ("attention_expected", attention, "on attention checks (-1 elsewhere)"),
        ):
            values = getattr(self, name)
            bad = ((values < 0) | (values > MAX_DIGIT)) & (required | (values != -1))
            if bad.any():
                shown = sorted(set(values[bad].tolist()))[:5]
                raise ValueError(f"Responses.{name} must be a digit 0–9 {rule}, got {shown}")

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
        empty: dict[str, Any] = {"label": np.array([], dtype=str)} if not rows else {}
        return cls(**{**columns, **empty})

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> Responses:
        """Build from aligned columns keyed by field name; other keys (``simulated``) ignored."""
        names = [f.name for f in fields(cls) if f.init and f.name != "worker_excluded"]
        return cls(**{name: columns[name] for name in names})

    def take(self, mask: np.ndarray) -> Responses:
        """The rows where ``mask`` is true."""
        kept: dict[str, Any] = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[mask]
            for f in fields(self)
            if f.init
        }
        return Responses(**kept)

    def outcomes(self) -> np.ndarray:
        """Per answer, an index into :data:`OUTCOMES` (change wins over no change).

        Only a digit target can be "change": '?' (code 10) never matches one.
        """
        digit_target = (self.target >= 0) & (self.target <= MAX_DIGIT)
        change = digit_target & (self.codes == self.target)
        no_change = ~change & (self.codes == self.original)
        unsure = self.codes == UNSURE_CODE
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


def included_answers(responses: Responses) -> Responses:
    """The study answers (no attention checks) of workers the rule kept."""
    if responses.worker_excluded is None:
        raise ValueError("apply an ExclusionRule with exclude() first")
    return responses.take(~responses.is_attention & ~responses.worker_excluded)
