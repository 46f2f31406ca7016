"""A study's pre-declared policies: who is excluded from its results (and from approval)."""

from __future__ import annotations

from annotate.analysis.report import ExclusionRule
from annotate.models import Study


def exclusion_rule(study: Study) -> ExclusionRule:
    """The pre-declared rule: a worker must pass every attention check their study showed."""
    return ExclusionRule(min_pass_rate=1.0, min_checks=1 if study.attention_checks else 0)
