"""Reads of a study's answers for researchers: export rows and the analysis's arrays.

Staff only: every row names the stimulus's original label, target, model and condition. Each
read is one query however many answers there are (joins and ``values_list``, no per-row access).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.db.models.functions import Coalesce

from annotate.models import Answer, Lease, Study

# Export columns, in order, and the lookup (from Answer) each one reads.
RESPONSE_COLUMNS: dict[str, str] = {
    "study": "lease__study__name",
    "worker": "lease__worker__external_id",
    "worker_source": "lease__worker__source",
    "worker_simulated": "lease__worker__simulated",
    "lease": "lease_id",
    "lease_status": "lease__status",
    "assignment": "lease__assignment__index",
    "replicate": "lease__assignment__replicate",
    "position": "item__position",
    "is_attention": "item__is_attention",
    "is_filler": "item__is_filler",
    "response_ms": "response_ms",
    "answered_at": "saved",
    "leased_at": "lease__leased",
    "submitted_at": "lease__submitted",
    "condition": "item__condition__position",
    "set": "item__stimulus__set__name",
    "set_kind": "item__stimulus__set__kind",
    "model": "item__stimulus__set__model__name",
    "defense": "item__stimulus__set__model__defense",
    "stimulus": "item__stimulus_id",
    "source_index": "item__stimulus__source_index",
    "original_label": "item__stimulus__original_label",
    "target": "item__stimulus__target",
    "shown_pred": "item__stimulus__shown_pred",
    "shown_confidence": "item__stimulus__shown_confidence",
    "success": "item__stimulus__success",
    "label": "label",
}
# ``simulated`` (worker or study simulated) is computed and placed after ``worker_source``.
RESPONSE_FIELDS: tuple[str, ...] = (
    *list(RESPONSE_COLUMNS)[:3],
    "simulated",
    *list(RESPONSE_COLUMNS)[3:],
)


ARRAY_KEYS: tuple[str, ...] = (
    "condition",
    "worker",
    "image",
    "label",
    "original",
    "target",
    "is_attention",
    "attention_expected",
    "simulated",
)


def _answers(*, study: Study, include_drafts: bool = False) -> QuerySet[Answer]:
    """The study's answers (of submitted leases unless ``include_drafts``), in export order."""
    answers = Answer.objects.filter(lease__study=study)
    if not include_drafts:
        answers = answers.filter(lease__status=Lease.Status.SUBMITTED)
    return answers.order_by("lease__assignment__index", "lease_id", "item__position")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def study_responses(*, study: Study, include_drafts: bool = False) -> list[dict[str, Any]]:
    """One row per answer with its provenance (``RESPONSE_FIELDS``), for exports (one query).

    Only submitted leases by default; ``include_drafts`` adds the answers saved so far in active
    and expired leases (``lease_status`` tells them apart). ``simulated`` is true for a simulated
    worker's answer and for every answer of a study that holds simulated answers.
    """
    names = list(RESPONSE_COLUMNS)
    rows = _answers(study=study, include_drafts=include_drafts).values_list(
        *RESPONSE_COLUMNS.values()
    )
    out = []
    for values in rows:
        row = dict(zip(names, values, strict=True))
        row["answered_at"] = _iso(row["answered_at"])
        row["leased_at"] = _iso(row["leased_at"])
        row["submitted_at"] = _iso(row["submitted_at"])
        row["simulated"] = bool(row["worker_simulated"] or study.simulated)
        out.append({name: row[name] for name in RESPONSE_FIELDS})
    return out


def responses_arrays(*, study: Study) -> dict[str, np.ndarray]:
    """The submitted answers to study items and attention checks (not fillers) as aligned
    columns for :mod:`annotate.analysis.report` (one query).

    Keys (``ARRAY_KEYS``): condition (position, −1 for attention checks), worker (external id),
    image (source index), label ('0'–'9' or '?'), original, target (−1 when none), is_attention,
    attention_expected (the check's original label, −1 otherwise), simulated (worker or study).
    """
    rows = list(
        _answers(study=study)
        .filter(item__is_filler=False)  # fillers complete a grid; they are neither data nor checks
        .values_list(
            Coalesce(F("item__condition__position"), Value(-1)),
            "lease__worker__external_id",
            "item__stimulus__source_index",
            "label",
            "item__stimulus__original_label",
            Coalesce(F("item__stimulus__target"), Value(-1)),
            "item__is_attention",
            Case(
                When(item__is_attention=True, then=F("item__stimulus__original_label")),
                default=Value(-1),
                output_field=IntegerField(),
            ),
            "lease__worker__simulated",
        )
    )
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(ARRAY_KEYS)
    dtypes = (np.int64, str, np.int64, str, np.int64, np.int64, bool, np.int64, bool)
    arrays = {
        key: np.array(column, dtype=dtype)
        for key, column, dtype in zip(ARRAY_KEYS, columns, dtypes, strict=True)
    }
    if study.simulated:
        arrays["simulated"] = np.ones(len(rows), dtype=bool)
    return arrays
