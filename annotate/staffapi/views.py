"""Staff API: read-only models, stimulus sets, stimuli and studies, plus results and exports;
jobs of the queue, with cancel and retry.

Token or session authentication, active staff only
(:class:`~annotate.staffapi.permissions.IsStaff`). Views are thin: query parameters go through
small serializers, numbers come from :func:`annotate.analysis.results.study_results` and rows
from :func:`annotate.analysis.selectors.study_responses`, and every list is one bounded set of
queries (joins, prefetches and subquery counts).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.analysis.exports import responses_csv_lines
from annotate.analysis.progress import studies_with_counts, study_progress
from annotate.analysis.results import study_results_cached
from annotate.analysis.selectors import study_responses
from annotate.models import Stimulus, StimulusSet, Study
from annotate.staffapi.permissions import IsStaff
from annotate.staffapi.serializers import (
    ErrorSerializer,
    JobDetailSerializer,
    JobSerializer,
    StimulusSerializer,
    StimulusSetSerializer,
    StudySerializer,
    TrainedModelDetailSerializer,
    TrainedModelSerializer,
)
from robustness.errors import BlindspotError
from robustness.registry import jobs
from robustness.registry.models import NAME_PATTERN, Job, TrainedModel

NAME_REGEX = NAME_PATTERN.strip("^$")  # names may hold dots, so no format suffixes on routes
MAX_BOOTSTRAP = 10_000


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus every :class:`~robustness.errors.BlindspotError` as its JSON body
    and status (the one mapping of our errors for this API)."""
    if isinstance(exc, BlindspotError):
        return Response(exc.as_json(), status=exc.status)
    return drf_exception_handler(exc, context)


def staff_endpoints_only(endpoints: list[tuple]) -> list[tuple]:
    """drf-spectacular preprocessing hook: the schema documents this API, not the worker API."""
    return [e for e in endpoints if e[0].startswith("/api/") and not e[0].startswith("/api/work/")]


class StaffPagination(PageNumberPagination):
    """Pages of 50 by default; ``?page_size=`` up to 500."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class StaffViewSet(viewsets.ReadOnlyModelViewSet):
    """Base of the staff viewsets: staff only, paginated, lists filtered by ``filter_class``."""

    permission_classes = [IsStaff]
    pagination_class = StaffPagination
    filter_class: type[serializers.Serializer] | None = None
    filter_lookups: dict[str, str] = {}

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """Apply the list's query-parameter filters (validated; a bad value is a 400)."""
        if self.action != "list" or self.filter_class is None:
            return queryset
        params = self.filter_class(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        lookups = {
            self.filter_lookups.get(key, key): value
            for key, value in params.validated_data.items()
            if value is not None
        }
        return queryset.filter(**lookups)


class ModelFilter(serializers.Serializer):
    """Query parameters of the model list."""

    status = serializers.ChoiceField(TrainedModel.Status.choices, required=False)
    defense = serializers.CharField(required=False)
    arch = serializers.CharField(required=False)


class SetFilter(serializers.Serializer):
    """Query parameters of the stimulus-set list."""

    kind = serializers.ChoiceField(StimulusSet.Kind.choices, required=False)
    model = serializers.CharField(required=False, help_text="model name")
    status = serializers.ChoiceField(StimulusSet.Status.choices, required=False)


class StimulusFilter(serializers.Serializer):
    """Query parameters of the stimulus list."""

    set = serializers.CharField(required=False, help_text="stimulus-set name")
    success = serializers.BooleanField(required=False, allow_null=True, default=None)
    original_label = serializers.IntegerField(required=False, min_value=0, max_value=9)
    target = serializers.IntegerField(required=False, min_value=0, max_value=9)


class StudyFilter(serializers.Serializer):
    """Query parameters of the study list."""

    status = serializers.ChoiceField(Study.Status.choices, required=False)
    set = serializers.CharField(required=False, help_text="studies with this stimulus set")


class JobFilter(serializers.Serializer):
    """Query parameters of the job list."""

    state = serializers.ChoiceField(Job.State.choices, required=False)
    kind = serializers.CharField(required=False, help_text="e.g. stimuli, stimulus_chunk, train")


class ResultsQuery(serializers.Serializer):
    """Query parameters of a study's results."""

    seed = serializers.IntegerField(default=0, help_text="bootstrap and permutation seed")
    bootstrap = serializers.IntegerField(
        default=1000, min_value=1, max_value=MAX_BOOTSTRAP, help_text="bootstrap replicates"
    )


class ExportQuery(serializers.Serializer):
    """Query parameters of a study's export (``format`` picks CSV or JSON)."""

    format = serializers.ChoiceField(["csv", "json"], default="json")
    drafts = serializers.BooleanField(
        default=False, help_text="add answers saved in active and expired leases"
    )


class ResponsesCSVRenderer(BaseRenderer):
    """A study's export rows as CSV, one header line of ``RESPONSE_FIELDS`` then one per answer."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        return "".join(responses_csv_lines(data)).encode(self.charset)


@extend_schema_view(list=extend_schema(parameters=[ModelFilter]))
class TrainedModelViewSet(StaffViewSet):
    """Trained networks by name: status, defense, metrics (detail adds config and history)."""

    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    filter_class = ModelFilter

    def get_queryset(self) -> QuerySet[TrainedModel]:
        queryset = TrainedModel.objects.order_by("-created", "-id")
        return queryset if self.action == "retrieve" else queryset.defer("history")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "retrieve":
            return TrainedModelDetailSerializer
        return TrainedModelSerializer


@extend_schema_view(list=extend_schema(parameters=[SetFilter]))
class StimulusSetViewSet(StaffViewSet):
    """Stimulus sets by name, with their model, parent and number of stimuli."""

    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    serializer_class = StimulusSetSerializer
    filter_class = SetFilter
    filter_lookups = {"model": "model__name"}

    def get_queryset(self) -> QuerySet[StimulusSet]:
        return (
            StimulusSet.objects.select_related("model", "parent")
            .annotate(stimuli_count=Count("stimuli"))
            .order_by("-created", "-id")
        )


@extend_schema_view(list=extend_schema(parameters=[StimulusFilter]))
class StimulusViewSet(StaffViewSet):
    """Stimuli by id, filterable by set name, success, original label and target."""

    serializer_class = StimulusSerializer
    filter_class = StimulusFilter
    filter_lookups = {"set": "set__name"}

    def get_queryset(self) -> QuerySet[Stimulus]:
        return Stimulus.objects.select_related("set").order_by("set_id", "source_index")


@extend_schema_view(list=extend_schema(parameters=[StudyFilter]))
class StudyViewSet(StaffViewSet):
    """Studies by name with conditions and live progress; results and exports as actions."""

    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    serializer_class = StudySerializer
    filter_class = StudyFilter
    filter_lookups = {"set": "conditions__set__name"}

    def get_queryset(self) -> QuerySet[Study]:
        if self.action in ("results", "export"):
            return Study.objects.all()
        return studies_with_counts()

    def get_serializer(self, *args: Any, **kwargs: Any) -> serializers.BaseSerializer:
        """Serializers of studies get their progress for the whole page at once (2 queries)."""
        if args and self.action in ("list", "retrieve"):
            studies = args[0] if kwargs.get("many") else [args[0]]
            kwargs["context"] = {
                **self.get_serializer_context(),
                "progress": study_progress(studies=studies),
            }
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        parameters=[ResultsQuery],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="study_results()")},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def results(self, request: Request, name: str) -> Response:
        """Table 4.2 for this study: rates with intervals per condition, exclusions, tests."""
        params = ResultsQuery(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        return Response(study_results_cached(study=self.get_object(), **params.validated_data))

    @extend_schema(
        parameters=[ExportQuery],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="a list of answers with their provenance"
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the same as CSV"),
        },
    )
    @action(
        detail=True,
        methods=["get"],
        pagination_class=None,
        renderer_classes=[JSONRenderer, ResponsesCSVRenderer],
    )
    def export(self, request: Request, name: str) -> Response:
        """Every answer of the study with its provenance (``study_responses``), CSV or JSON."""
        params = ExportQuery(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        study = self.get_object()
        rows = study_responses(study=study, include_drafts=params.validated_data["drafts"])
        headers = {}
        if isinstance(request.accepted_renderer, ResponsesCSVRenderer):
            headers["Content-Disposition"] = f'attachment; filename="{study.name}-responses.csv"'
        return Response(rows, headers=headers)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any):
        """Errors of the export go out as JSON even when CSV was asked for."""
        if response.status_code >= 400 and isinstance(
            getattr(request, "accepted_renderer", None), ResponsesCSVRenderer
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


JOB_REFUSALS = {
    400: OpenApiResponse(ErrorSerializer, description="refused, e.g. the job is not failed"),
    503: OpenApiResponse(ErrorSerializer, description="the job queue's broker is unreachable"),
}


@extend_schema_view(list=extend_schema(parameters=[JobFilter]))
class JobViewSet(StaffViewSet):
    """Jobs of the queue by id, newest first, filterable by state and kind; the detail adds
    parameters, result, log tail and each child's summary. Cancel and retry are actions."""

    filter_class = JobFilter

    def get_queryset(self) -> QuerySet[Job]:
        queryset = Job.objects.annotate(children_count=Count("children")).order_by(
            "-created", "-id"
        )
        if self.action == "list":
            return queryset.defer("params", "result", "log")
        children = Job.objects.order_by("id").defer("params", "result", "log")
        return queryset.prefetch_related(Prefetch("children", queryset=children))

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return JobSerializer if self.action == "list" else JobDetailSerializer

    def _detail(self, job: Job) -> Response:
        return Response(JobDetailSerializer(self.get_queryset().get(pk=job.pk)).data)

    @extend_schema(request=None, responses={200: JobDetailSerializer})
    @action(detail=True, methods=["post"], pagination_class=None)
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel the job and its unfinished children (running ones stop at their next step);
        a finished job is left as it is."""
        job = self.get_object()
        if job.state not in Job.FINISHED:
            jobs.job_cancel(job)
        return self._detail(job)

    @extend_schema(request=None, responses={200: JobDetailSerializer, **JOB_REFUSALS})
    @action(detail=True, methods=["post"], pagination_class=None)
    def retry(self, request: Request, pk: str) -> Response:
        """Send a failed or cancelled job (a parent: its failed and cancelled children) again."""
        job = self.get_object()
        jobs.broker_check()  # before job_retry marks anything queued
        jobs.job_retry(job)
        return self._detail(job)
