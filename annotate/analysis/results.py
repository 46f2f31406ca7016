"""A study's results: its answers from the database through the pure analysis (Table 4.2).

The one place the console, the API and ``study_results`` get their numbers from, so they agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Max

from annotate.analysis.report import ANALYSIS_VERSION, analyse
from annotate.analysis.responses import ExclusionRule, Responses
from annotate.analysis.selectors import responses_arrays
from annotate.models import Lease, Study
from annotate.studies.policy import exclusion_rule

CACHE_SECONDS = 24 * 3600


def study_results(
    *,
    study: Study,
    rule: ExclusionRule | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """Rates with intervals per condition, exclusions, comparisons and agreement (JSON-ready)."""
    rule = rule or exclusion_rule(study)
    conditions: dict[Hashable, dict[str, Any]] = {
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
    report = analyse(
        Responses.from_columns(arrays),
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


def _cache_key(study: Study, rule: ExclusionRule, seed: int, bootstrap: int) -> str:
    """A key that changes whenever the numbers could: submitted answers are immutable, so the
    count and the newest submission time of the study's submitted leases name its data."""
    data = Lease.objects.filter(study=study, status=Lease.Status.SUBMITTED).aggregate(
        n=Count("id"), last=Max("submitted")
    )
    parts = [
        ANALYSIS_VERSION,
        study.pk,
        study.status,
        study.simulated,
        data["n"],
        data["last"],
        rule,
        seed,
        bootstrap,
    ]
    return "study-results:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def study_results_cached(
    *,
    study: Study,
    rule: ExclusionRule | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """:func:`study_results` through Django's cache (the console and the API ask often; the
    bootstrap is the slow part); any new submission gives a new key, so nothing is stale."""
    rule = rule or exclusion_rule(study)
    key = _cache_key(study, rule, seed, bootstrap)
    result = cache.get(key)
    if result is None:
        result = study_results(study=study, rule=rule, seed=seed, bootstrap=bootstrap)
        cache.set(key, result, CACHE_SECONDS)
    return result
