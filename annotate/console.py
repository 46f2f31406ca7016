"""The researchers' console: staff-only, server-rendered pages over studies and models.

Thin views: numbers come from :func:`annotate.results.study_results` (the function behind
``manage.py study_results``, so the console and the command agree), exports from
:func:`annotate.selectors.study_responses`, charts from :mod:`annotate.plots`. Only a staff
session gets in (``staff_member_required``); a worker's lease token is not a credential here.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from annotate import plots
from annotate.analysis import OUTCOMES
from annotate.models import Answer, Assignment, Condition, Lease, Stimulus, Study
from annotate.results import study_results
from annotate.selectors import responses_csv_lines, study_responses
from annotate.studies import StudyError, study_close, study_open
from robustness.models import TrainedModel

SAMPLES_PER_CONDITION = 4


def study_progress(*, studies: list[Study]) -> dict[int, dict[str, int]]:
    """Per study id: assignments, leases active / submitted / expired, answers (3 queries)."""
    ids = [s.pk for s in studies]
    out = {
        pk: {"assignments": 0, "active": 0, "submitted": 0, "expired": 0, "answers": 0}
        for pk in ids
    }
    for row in Assignment.objects.filter(study__in=ids).values("study").annotate(n=Count("id")):
        out[row["study"]]["assignments"] = row["n"]
    for row in (
        Lease.objects.filter(study__in=ids).values("study", "status").annotate(n=Count("id"))
    ):
        out[row["study"]][row["status"]] = row["n"]
    answers = (
        Answer.objects.filter(lease__study__in=ids, lease__status=Lease.Status.SUBMITTED)
        .values("lease__study")
        .annotate(n=Count("id"))
    )
    for row in answers:
        out[row["lease__study"]]["answers"] = row["n"]
    for counts in out.values():
        total = counts["assignments"]
        counts["open"] = max(0, total - counts["active"] - counts["submitted"])
        counts["submitted_pct"] = round(100 * counts["submitted"] / total, 1) if total else 0
        counts["active_pct"] = round(100 * counts["active"] / total, 1) if total else 0
    return out


def metrics_rows(metrics: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested metrics dict flattened to (dotted key, value) rows for a table."""
    if isinstance(metrics, dict):
        rows: list[tuple[str, Any]] = []
        for key, value in metrics.items():
            rows += metrics_rows(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(metrics, list):
        return [(prefix, json.dumps(metrics))]
    return [(prefix, metrics)]


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    """Every study with its live progress, and every model."""
    studies = list(Study.objects.all())
    progress = study_progress(studies=studies)
    rows = [{"study": s, **progress[s.pk]} for s in studies]
    models = TrainedModel.objects.only("name", "arch", "defense", "status")
    return render(request, "console/home.html", {"rows": rows, "models": models})


def _samples(study: Study) -> list[dict[str, Any]]:
    """A few stimuli per condition for the sample grids (clean beside adversarial)."""
    conditions = list(study.conditions.select_related("set__model"))
    out = []
    for c in conditions:
        stimuli = list(c.set.stimuli.order_by("source_index")[:SAMPLES_PER_CONDITION])
        out.append({"condition": c, "stimuli": stimuli})
    return out


def fmt_pct(value: float | None) -> str:
    """A percentage the way ``study_results --format table`` prints it (one decimal)."""
    return "—" if value is None else f"{value:.1f}"


def results_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The condition rows of ``study_results`` with every rate and bound formatted for display."""
    table = []
    for row in result["conditions"]:
        cells = {
            name: {
                "pct": fmt_pct(row[name]["pct"]),
                "wilson": [fmt_pct(v) for v in row[name]["wilson"]],
                "bootstrap": [fmt_pct(v) for v in row[name]["bootstrap"]],
                "count": row[name]["count"],
            }
            for name in OUTCOMES
        }
        table.append({"row": row, "cells": [cells[name] for name in OUTCOMES]})
    return table


def _named_pairs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The pairwise comparisons with condition names in place of position codes."""
    names = {str(row["condition"]): row.get("name") for row in result["conditions"]}
    return [
        {**p, "a_name": names.get(str(p["a"]), p["a"]), "b_name": names.get(str(p["b"]), p["b"])}
        for p in result["comparisons"]["pairs"]
    ]


@staff_member_required
def study_detail(request: HttpRequest, name: str) -> HttpResponse:
    """Results table and chart, sample grids, workers' attention checks, exports, open/close."""
    study = get_object_or_404(Study, name=name)
    result = study_results(study=study)
    chart = plots.rates_chart_svg(conditions=result["conditions"]) if result["conditions"] else ""
    context = {
        "study": study,
        "result": result,
        "outcomes": [plots.OUTCOME_LABELS[name] for name in OUTCOMES],
        "table": results_table(result),
        "comparisons": _named_pairs(result),
        "chart": mark_safe(chart),  # noqa: S308 — matplotlib's SVG escapes its text
        "samples": _samples(study),
        "workers": result["exclusions"]["workers"],
        "progress": study_progress(studies=[study])[study.pk],
    }
    return render(request, "console/study.html", context)


@staff_member_required
def study_export(request: HttpRequest, name: str, fmt: str) -> HttpResponse:
    """Every submitted answer with its provenance, as a CSV or JSON download."""
    study = get_object_or_404(Study, name=name)
    rows = study_responses(study=study)
    if fmt == "csv":
        response: HttpResponse = StreamingHttpResponse(
            responses_csv_lines(rows), content_type="text/csv; charset=utf-8"
        )
    elif fmt == "json":
        body = json.dumps({"study": study.name, "simulated": study.simulated, "responses": rows})
        response = HttpResponse(body, content_type="application/json")
    else:
        raise Http404("unknown export format")
    response["Content-Disposition"] = f'attachment; filename="{study.name}-responses.{fmt}"'
    return response


def _transition(request: HttpRequest, name: str, action) -> HttpResponse:
    study = get_object_or_404(Study, name=name)
    try:
        action(study=study)
    except StudyError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"study {study.name} is now {study.status}")
    return HttpResponseRedirect(reverse("console:study", args=[study.name]))


@require_POST
@staff_member_required
def study_open_view(request: HttpRequest, name: str) -> HttpResponse:
    """Open a draft or closed study (POST with CSRF)."""
    return _transition(request, name, study_open)


@require_POST
@staff_member_required
def study_close_view(request: HttpRequest, name: str) -> HttpResponse:
    """Close an open study (POST with CSRF)."""
    return _transition(request, name, study_close)


@staff_member_required
def stimulus_image(request: HttpRequest, pk: int, which: str) -> HttpResponse:
    """A stimulus's shown or clean image, read through the storage API (staff only)."""
    stimulus = get_object_or_404(Stimulus, pk=pk)
    field = {"shown": stimulus.image, "clean": stimulus.clean_image}.get(which)
    if not field:
        raise Http404("no such image")
    try:
        handle = field.open("rb")
    except (FileNotFoundError, OSError) as exc:
        raise Http404("image missing from storage") from exc
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@staff_member_required
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    """A model's training curves and its robustness metrics."""
    model = get_object_or_404(TrainedModel, name=name)
    chart = plots.history_chart_svg(history=model.history) if model.history else ""
    conditions = Condition.objects.filter(set__model=model).select_related("study", "set")
    context = {
        "model": model,
        "chart": mark_safe(chart),  # noqa: S308 — matplotlib's SVG escapes its text
        "metrics": metrics_rows(model.metrics),
        "conditions": conditions,
    }
    return render(request, "console/model.html", context)
