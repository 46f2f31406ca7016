"""The researchers' console: staff-only, server-rendered pages over studies and models.

Thin views: numbers come from :func:`annotate.analysis.results.study_results` (the function
behind ``manage.py study_results``, so the console and the command agree), exports from
:func:`annotate.analysis.selectors.study_responses`, charts from :mod:`annotate.analysis.plots`.
Only a staff session gets in (``staff_member_required``); a worker's lease token is not a
credential here. A refused action (any :class:`~robustness.errors.BlindspotError`) comes back
as a message on the page.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from annotate.analysis import plots
from annotate.analysis.exports import responses_csv_lines
from annotate.analysis.progress import studies_with_counts, study_progress
from annotate.analysis.responses import OUTCOMES
from annotate.analysis.results import study_results_cached
from annotate.analysis.selectors import study_responses
from annotate.console.forms import CreateStudyForm, GenerateStimuliForm, PlanStudyForm
from annotate.models import Condition, Stimulus, Study
from annotate.providers.registry import providers
from annotate.stimuli.queueing import stimulus_set_queue
from annotate.stimuli.selectors import stimulus_sets_with_progress
from annotate.studies.creation import study_create
from annotate.studies.lifecycle import study_close, study_open
from annotate.studies.planning import study_plan
from robustness.errors import BlindspotError
from robustness.registry import jobs
from robustness.registry.models import Job, TrainedModel

SAMPLES_PER_CONDITION = 4


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
    """Every study with its live progress, every stimulus set (with its latest job), every
    model, and how many jobs are queued or running."""
    studies = list(studies_with_counts())
    progress = study_progress(studies=studies)
    rows = [{"study": s, **progress[s.pk]} for s in studies]
    models = TrainedModel.objects.only("name", "arch", "defense", "status")
    sets = stimulus_sets_with_progress()
    set_jobs = dict(  # the newest "stimuli" job of each set wins
        Job.objects.filter(kind="stimuli", parent__isnull=True, label__in=[s["name"] for s in sets])
        .order_by("created", "id")
        .values_list("label", "pk")
    )
    context = {
        "rows": rows,
        "sets": [{**s, "job": set_jobs.get(s["name"])} for s in sets],
        "models": models,
        "active_jobs": jobs.active_jobs().filter(parent__isnull=True).count(),
    }
    return render(request, "console/home.html", context)


@staff_member_required
def live_progress(request: HttpRequest) -> JsonResponse:
    """The home page's numbers as JSON, polled by ``console/live.js`` to move the bars."""
    studies = list(studies_with_counts())
    progress = study_progress(studies=studies)
    body = {
        "studies": {s.name: {"status": s.status, **progress[s.pk]} for s in studies},
        "sets": {row["name"]: row for row in stimulus_sets_with_progress()},
    }
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


@staff_member_required
def stimuli_new(request: HttpRequest) -> HttpResponse:
    """The generate_stimuli form; a valid request is queued as jobs, followed on the job's page."""
    form = GenerateStimuliForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        request_ = form.cleaned_data["request"]
        try:
            parent = stimulus_set_queue(request=request_, chunks=None)
        except BlindspotError as exc:  # the broker is down, or the set cannot be replaced
            messages.error(request, f"{request_.set_name}: {exc}")
        else:
            messages.success(
                request,
                f"generating {request_.set_name}: {parent.progress_total} chunk(s) of "
                f"{parent.params['images']} images queued",
            )
            return HttpResponseRedirect(reverse("console:job", args=[parent.pk]))
    context = {
        "form": form,
        "heading": "Generate stimuli",
        "intro": "Queues the set on the job queue (as manage.py generate_stimuli --queue does): "
        "the high-confidence targeted attack through the 8-bit view of the model, in chunks "
        "that workers take, then the control sets. Progress shows on the jobs page; queueing "
        "the same set again resumes it.",
        "submit": "Queue",
    }
    return render(request, "console/form.html", context)


@staff_member_required
def study_new(request: HttpRequest) -> HttpResponse:
    """The create_study form, and beside it plan_study's answer for the ticked conditions:
    "Plan" computes participants, cost and duration; "Create" makes the draft study."""
    planning = request.method == "POST" and "plan" in request.POST
    form = CreateStudyForm(None if planning else (request.POST or None))
    plan_form = PlanStudyForm(request.POST if planning else None)
    plan_lines: list[str] = []
    if planning:
        form = CreateStudyForm(initial=_create_initial(request))
        sizes = CreateStudyForm(request.POST)
        sizes.is_valid()  # only the fields the plan needs are read, whatever else is missing
        got = sizes.cleaned_data
        if plan_form.is_valid():
            answers = (got.get("size") or 25) - (got.get("attention_checks") or 0)
            sets = tuple(s.name for s in got.get("sets") or ())
            try:
                plan_lines = study_plan(
                    plan_form.request(sets, answers=answers, raters=got.get("raters") or 1)
                ).lines()
            except BlindspotError as exc:
                plan_form.add_error(None, str(exc))
    elif request.method == "POST" and form.is_valid():
        try:
            study = study_create(spec=form.cleaned_data["spec"])
        except BlindspotError as exc:
            form.add_error(None, str(exc))
        else:
            plan = study.config["plan"]
            messages.success(
                request,
                f"study {study.name} created (draft): {plan['assignments']} assignments; "
                "open it when ready",
            )
            return HttpResponseRedirect(reverse("console:study", args=[study.name]))
    context = {
        "form": form,
        "plan_form": plan_form,
        "plan_lines": plan_lines,
        "heading": "New study",
        "intro": "Creates a draft study (manage.py create_study): its design is planned and "
        "frozen now; open it from its page when ready. Plan first (manage.py plan_study): "
        "how many participants tell the conditions apart, what that costs, how long it takes.",
        "submit": "Create study",
    }
    return render(request, "console/study_new.html", context)


def _create_initial(request: HttpRequest) -> dict[str, Any]:
    """The create form's fields as posted, to show them again after planning."""
    initial: dict[str, Any] = {k: v for k, v in request.POST.items() if not k.startswith("plan")}
    initial["sets"] = request.POST.getlist("sets")
    return initial


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


def _provider_links(study: Study) -> list[dict[str, Any]]:
    """The installed providers' console pages for ``study``, the study's own provider marked."""
    links = []
    for provider in providers():
        url = provider.console_url(study)
        if url:
            links.append(
                {"label": provider.label, "url": url, "current": provider.name == study.provider}
            )
    return links


@staff_member_required
def study_detail(request: HttpRequest, name: str) -> HttpResponse:
    """Results table and chart, sample grids, workers' attention checks, exports, open/close."""
    study = get_object_or_404(Study, name=name)
    result = study_results_cached(study=study)
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
        "progress": study_progress(studies=studies_with_counts().filter(pk=study.pk))[study.pk],
        "providers": _provider_links(study),
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


def _status_change(request: HttpRequest, name: str, action) -> HttpResponse:
    study = get_object_or_404(Study, name=name)
    try:
        action(study=study)
    except BlindspotError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"study {study.name} is now {study.status}")
    return HttpResponseRedirect(reverse("console:study", args=[study.name]))


@require_POST
@staff_member_required
def study_open_view(request: HttpRequest, name: str) -> HttpResponse:
    """Open a draft or closed study (POST with CSRF)."""
    return _status_change(request, name, study_open)


@require_POST
@staff_member_required
def study_close_view(request: HttpRequest, name: str) -> HttpResponse:
    """Close an open study (POST with CSRF)."""
    return _status_change(request, name, study_close)


@staff_member_required
def stimulus_image(request: HttpRequest, pk: int, which: str) -> HttpResponse:
    """A stimulus's shown or clean image, read through the storage API (staff only)."""
    stimulus = get_object_or_404(Stimulus, pk=pk)
    field = {"shown": stimulus.image, "clean": stimulus.clean_image}.get(which)
    if not field:
        raise Http404("no such image")
    try:
        handle = field.open("rb")
    except (OSError, BotoCoreError, ClientError) as exc:
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
