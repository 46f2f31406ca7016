"""The thesis's claims about its MNIST tables, checked against a reproduced table.

Plain data and functions over the aggregate that :func:`robustness.registry.reproduction.
aggregate` builds (``report["networks"][arch][row]["values"][column]["mean"]``, thesis units).
Each claim says what the thesis asserts in words and returns a verdict: ``reproduced``,
``not reproduced`` (with the numbers that contradict it) or ``pending`` (cells missing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from robustness.tables import TABLES

Report = dict[str, Any]
REPRODUCED, NOT_REPRODUCED, PENDING = "reproduced", "not reproduced", "pending"


@dataclass(frozen=True)
class Claim:
    table: str
    key: str
    text: str
    check: Callable[[Report], tuple[str, str]]

    def verdict(self, report: Report) -> dict[str, str]:
        verdict, evidence = self.check(report)
        return {"claim": self.key, "text": self.text, "verdict": verdict, "evidence": evidence}


def _value(report: Report, arch: str, row: str, column: str) -> float | None:
    try:
        return report["networks"][arch][row]["values"][column]["mean"]
    except KeyError:
        return None


def _rows(table: str) -> list[str]:
    return [row.label for row in TABLES[table].rows]


def _settled(verdict: str, missing: bool) -> str:
    """A contradiction on the cells at hand is final; otherwise missing cells leave it open."""
    return verdict if verdict == NOT_REPRODUCED or not missing else PENDING


def _values(report: Report, arch: str, rows: Sequence[str], column: str) -> dict[str, float]:
    """``column`` of each of ``rows`` on ``arch``; empty when any cell is missing."""
    values = {row: _value(report, arch, row, column) for row in rows}
    return {} if any(v is None for v in values.values()) else cast(dict[str, float], values)


Finding = tuple[bool, str]  # (holds, what the numbers say)


def _judge(
    report: Report,
    parts: Sequence[str],
    judge: Callable[[Report, str], list[Finding] | None],
    absent: str = "cells missing",
) -> tuple[str, str]:
    """Run ``judge`` on each network (or row); None means its cells are missing. Any finding
    that fails makes the claim not reproduced; missing parts otherwise leave it pending."""
    notes, verdict, missing = [], REPRODUCED, False
    for part in parts:
        findings = judge(report, part)
        if findings is None:
            notes.append(f"{part}: {absent}")
            missing = True
            continue
        for ok, note in findings:
            verdict = verdict if ok else NOT_REPRODUCED
            notes.append(note)
    return _settled(verdict, missing), "; ".join(notes)


def _largest(column: str, winners: Sequence[str], archs: Sequence[str], table: str) -> Callable:
    """The best of ``winners`` beats every other row of ``column`` on every network."""

    def judge(report: Report, arch: str) -> list[Finding] | None:
        values = _values(report, arch, _rows(table), column)
        if not values:
            return None
        best = max(winners, key=lambda row: values[row])
        rival = max((r for r in values if r not in winners), key=lambda row: values[row])
        ok = values[best] > values[rival]
        sign = ">" if ok else "<="
        return [(ok, f"{arch}: {best} {values[best]:.3g} {sign} {rival} {values[rival]:.3g}")]

    return lambda report: _judge(report, archs, judge)


def _between(column: str, low: str, middle: Sequence[str], high: Sequence[str], archs) -> Callable:
    """Each of ``middle`` lies above ``low`` and below the best of ``high``."""

    def judge(report: Report, arch: str) -> list[Finding] | None:
        values = _values(report, arch, [low, *middle, *high], column)
        if not values:
            return None
        top = max(values[row] for row in high)
        findings = []
        for row in middle:
            ok = values[low] < values[row] < top
            note = f"{arch} {row}: {values[low]:.3g} < {values[row]:.3g} < {top:.3g}"
            findings.append((ok, note + ("" if ok else " fails")))
        return findings

    return lambda report: _judge(report, archs, judge)


def _smallest(column: str, winner: str, archs: Sequence[str], table: str) -> Callable:
    """``winner`` has the smallest value of ``column`` on every network (e.g. FGSM error)."""

    def judge(report: Report, arch: str) -> list[Finding] | None:
        values = _values(report, arch, _rows(table), column)
        if not values:
            return None
        rival = min((r for r in values if r != winner), key=lambda row: values[row])
        ok = values[winner] < values[rival]
        sign = "<" if ok else ">="
        return [(ok, f"{arch}: {winner} {values[winner]:.3g} {sign} {rival} {values[rival]:.3g}")]

    return lambda report: _judge(report, archs, judge)


def _at_least(column: str, row: str, floor: float, archs: Sequence[str]) -> Callable:
    def judge(report: Report, arch: str) -> list[Finding] | None:
        value = _value(report, arch, row, column)
        if value is None:
            return None
        ok = value >= floor
        return [(ok, f"{arch} {row}: {value:.4g} {'>=' if ok else '<'} {floor:g}")]

    return lambda report: _judge(report, archs, judge, "cell missing")


def _at_most(column: str, row: str, ceilings: dict[str, float]) -> Callable:
    """``column`` of ``row`` is at most a ceiling per network (the clean-error targets)."""

    def judge(report: Report, arch: str) -> list[Finding] | None:
        value = _value(report, arch, row, column)
        if value is None:
            return None
        ok = value <= ceilings[arch]
        return [(ok, f"{arch} {row}: {value:.3g} {'<=' if ok else '>'} {ceilings[arch]:g}")]

    return lambda report: _judge(report, list(ceilings), judge, "cell missing")


def _attack_beats(ours: str, baseline: str, rows: Sequence[str], arch: str) -> Callable:
    """Column ``ours`` (a mean minimal norm) is below ``baseline`` on every row."""

    def judge(report: Report, row: str) -> list[Finding] | None:
        a, b = _value(report, arch, row, ours), _value(report, arch, row, baseline)
        if a is None or b is None:
            return None
        ok = a < b
        return [(ok, f"{row}: {ours} {a:.4g} {'<' if ok else '>='} {baseline} {b:.4g}")]

    return lambda report: _judge(report, rows, judge)


T31 = ("mlp1000", "lenet5")
T41 = ("mlp1200", "lenet5")
T51 = ("plain", "linf-AT", "l2-AT")

CLAIMS: tuple[Claim, ...] = (
    # The research preset's premise: plain models as accurate as the thesis's (issue 16).
    Claim(
        "table3.1",
        "plain-error",
        "The plain networks reach the thesis's clean error (LeNet-5 ≤ 1.0%, MLP ≤ 1.6%)",
        _at_most("error %", "baseline", {"mlp1000": 1.6, "lenet5": 1.0}),
    ),
    Claim(
        "table4.1",
        "plain-error",
        "The plain networks reach the thesis's clean error (LeNet-5 ≤ 1.0%, MLP ≤ 1.6%)",
        _at_most("err %", "none", {"mlp1200": 1.6, "lenet5": 1.0}),
    ),
    Claim(
        "table5.1",
        "plain-error",
        "The plain network reaches the thesis's clean error (madry_cnn ≤ 1.2%)",
        _at_most("error %", "plain", {"madry_cnn": 1.2}),
    ),
    Claim(
        "table3.1",
        "margin-largest-rho",
        "Margin maximization (l1 or l2) gives the largest ρ under DeepFool on both networks",
        _largest("rho x10", ("our l1", "our l2"), T31, "table3.1"),
    ),
    Claim(
        "table3.1",
        "at-vat-between",
        "AT and VAT lie between the baseline and margin maximization in ρ under DeepFool",
        _between("rho x10", "baseline", ("AT", "VAT"), ("our l1", "our l2"), T31),
    ),
    Claim(
        "table3.1",
        "at-lowest-fgsm",
        "FGSM adversarial training has the lowest FGSM error (ε = 0.2) on both networks",
        _smallest("FGSM err %", "AT", T31, "table3.1"),
    ),
    Claim(
        "table4.1",
        "critic-largest-hc",
        "The adversary critic has the largest ρ under the high-confidence attack on both networks",
        _largest("Our", ("critic",), T41, "table4.1"),
    ),
    Claim(
        "table4.1",
        "critic-largest-df-cw",
        "The adversary critic also has the largest ρ under DeepFool and C&W",
        lambda report: _both(
            report,
            _largest("DF", ("critic",), T41, "table4.1"),
            _largest("CW", ("critic",), T41, "table4.1"),
        ),
    ),
    Claim(
        "table4.1",
        "critic-hits-target",
        "The high-confidence attack on the critic's models reaches the target class at the "
        "clean confidence (success ≥ 99%)",
        _at_least("Our success %", "critic", 99.0, T41),
    ),
    Claim(
        "table5.1",
        "pdpgd-beats-deepfool-linf",
        "PDPGD finds smaller l∞ perturbations than DeepFool on plain and adversarially "
        "trained models",
        _attack_beats("linf PDPGD", "linf DF", T51, "madry_cnn"),
    ),
    Claim(
        "table5.1",
        "pdgd-beats-deepfool-l2",
        "PDGD finds smaller l2 perturbations than DeepFool on plain and adversarially "
        "trained models",
        _attack_beats("l2 PDGD", "l2 DF", T51, "madry_cnn"),
    ),
)


def _both(report: Report, *checks: Callable) -> tuple[str, str]:
    results = [check(report) for check in checks]
    verdicts = {v for v, _ in results}
    verdict = (
        PENDING
        if PENDING in verdicts
        else NOT_REPRODUCED
        if NOT_REPRODUCED in verdicts
        else REPRODUCED
    )
    return verdict, " | ".join(evidence for _, evidence in results)


def verdicts(table: str, report: Report) -> list[dict[str, str]]:
    """Every claim about ``table``, judged on ``report``."""
    return [claim.verdict(report) for claim in CLAIMS if claim.table == table]
