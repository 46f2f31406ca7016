"""Live progress of studies: one definition for the console, its live bars and the staff API.

An assignment is *open* when no live lease holds it, *leased* while an unexpired active lease
does, *submitted* once answered; submitted work of a worker the study's pre-declared exclusion
rule excludes counts as *excluded* instead. An active lease past its expiry counts as expired,
as the next lease request will find it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Now

from annotate.analysis.responses import exclusion_reasons
from annotate.models import Answer, Assignment, Condition, Lease, Study
from annotate.studies.policy import exclusion_rule

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

STATES = ("submitted", "excluded", "leased", "open")


class StudyCounts(TypedDict):
    """The ``n_*`` annotations :func:`studies_with_counts` puts on each study."""

    n_assignments: int
    n_active: int
    n_submitted: int
    n_expired: int
    n_answers: int


def _count(model: type[Assignment | Lease], *conditions: Q, **filters: Any) -> Coalesce:
    """A correlated count of ``model`` rows of the outer study (a subquery: no join fan-out)."""
    rows = (
        model.objects.filter(*conditions, study=OuterRef("pk"), **filters)
        .order_by()
        .values("study")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


def studies_with_counts() -> QuerySet[WithAnnotations[Study, StudyCounts]]:
    """Studies (newest first) with conditions prefetched and lease counts annotated (``n_*``)."""
    stale = Q(status=Lease.Status.EXPIRED) | Q(status=Lease.Status.ACTIVE, expires__lte=Now())
    conditions = Condition.objects.select_related("set__model").order_by("position")
    answers = (
        Answer.objects.filter(lease__study=OuterRef("pk"), lease__status=Lease.Status.SUBMITTED)
        .order_by()
        .values("lease__study")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        Study.objects.prefetch_related(Prefetch("conditions", queryset=conditions))
        .annotate(
            n_assignments=_count(Assignment),
            n_active=_count(Lease, status=Lease.Status.ACTIVE, expires__gt=Now()),
            n_submitted=_count(Lease, status=Lease.Status.SUBMITTED),
            n_expired=_count(Lease, stale),
            n_answers=Coalesce(Subquery(answers, output_field=IntegerField()), Value(0)),
        )
        .order_by("-created", "-id")
    )


def excluded_work(*, studies: Iterable[Study]) -> dict[int, dict[str, int]]:
    """Per study id: workers the study's exclusion rule excludes, and their submitted leases.

    Two queries for any number of studies: submitted leases, and their attention answers.
    """
    studies = list(studies)
    ids = [s.pk for s in studies]
    leases: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for study, worker in Lease.objects.filter(
        study__in=ids, status=Lease.Status.SUBMITTED
    ).values_list("study", "worker"):
        leases[study][worker] += 1
    checks: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    attention = Answer.objects.filter(
        lease__study__in=ids, lease__status=Lease.Status.SUBMITTED, item__is_attention=True
    ).values_list("lease__study", "lease__worker", "label", "item__stimulus__original_label")
    for study, worker, label, original in attention:
        tally = checks[(study, worker)]
        tally[0] += 1
        tally[1] += label == str(original)
    out = {}
    for s in studies:
        workers = list(leases[s.pk])
        seen = np.array([checks[(s.pk, w)][0] for w in workers], dtype=np.int64)
        passed = np.array([checks[(s.pk, w)][1] for w in workers], dtype=np.int64)
        few, failed = exclusion_reasons(seen, passed, rule=exclusion_rule(s))
        excluded = few | failed
        out[s.pk] = {
            "workers": int(excluded.sum()),
            "leases": sum(leases[s.pk][w] for w, x in zip(workers, excluded, strict=True) if x),
        }
    return out


def study_progress(
    *, studies: Iterable[WithAnnotations[Study, StudyCounts]]
) -> dict[int, dict[str, Any]]:
    """Per study id: assignments by state (open / leased / submitted / excluded), leases
    expired, workers excluded, and each state's share in percent — for studies from
    :func:`studies_with_counts` (their ``n_*`` annotations)."""
    studies = list(studies)
    excluded = excluded_work(studies=studies)
    out = {}
    for s in studies:
        total = s.n_assignments
        counts: dict[str, Any] = {
            "assignments": total,
            "leased": s.n_active,
            "submitted": s.n_submitted - excluded[s.pk]["leases"],
            "excluded": excluded[s.pk]["leases"],
            "open": max(total - s.n_active - s.n_submitted, 0),
            "expired": s.n_expired,
            "workers_excluded": excluded[s.pk]["workers"],
            "answers": s.n_answers,
        }
        counts["pct"] = {
            state: round(100 * counts[state] / total, 1) if total else 0.0 for state in STATES
        }
        out[s.pk] = counts
    return out
