"""A study's results: its answers from the database through the pure analysis (Table 4.2).

The one place the console, the API and ``study_results`` get their numbers from, so they agree.
"""

from __future__ import annotations

from typing import Any

from annotate import analysis
from annotate.models import Study
from annotate.selectors import responses_arrays


def default_rule(study: Study) -> analysis.ExclusionRule:
    """The pre-declared rule: a worker must pass every attention check their study showed."""
    return analysis.ExclusionRule(min_pass_rate=1.0, min_checks=1 if study.attention_checks else 0)


def study_results(
    *,
    study: Study,
    rule: analysis.ExclusionRule | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """Rates with intervals per condition, exclusions, comparisons and agreement (JSON-ready)."""
    rule = rule or default_rule(study)
    conditions = {
        c.position: {
            "name": c.set.name,
            "kind": c.set.kind,
            "model": c.set.model.name,
            "defense": c.set.model.defense,
            "parent": None,
        }
        for c in study.conditions.select_related("set__model", "set__parent")
    }
    by_set = {meta["name"]: code for code, meta in conditions.items()}
    for c in study.conditions.select_related("set__parent"):
        if c.set.parent is not None:
            conditions[c.position]["parent"] = by_set.get(c.set.parent.name)
    arrays = responses_arrays(study=study)
    report = analysis.analyse(
        analysis.Responses.from_columns(arrays),
        rule=rule,
        seed=seed,
        bootstrap=bootstrap,
        conditions=conditions,
    )
    return {
        "study": study.name,
        "status": study.status,
        "simulated": bool(study.simulated or arrays["simulated"].any()),
        "exclusion_rule": rule.describe(),
        **report,
    }
