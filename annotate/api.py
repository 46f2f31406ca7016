"""Worker API: lease, fetch items, autosave, submit, images — used by the labeling page.

No login and no cookies (the page often runs in a third-party iframe); the signed token in the
URL names the lease. Only JSON goes out (no browsable API and no OPTIONS metadata, which would
describe the views), every error is ``{"error": code, "detail": message}`` with a 4xx status,
and nothing names a label, target, model, defense or condition.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import errors, leasing
from annotate.models import Item
from annotate.tokens import lease_token

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _error(exc: errors.WorkError) -> dict[str, str]:
    return {"error": exc.code, "detail": exc.message}


class WorkerAPIView(APIView):
    """Base of the worker endpoints: anonymous, JSON only, size-limited, uniform errors."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]
    metadata_class = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise errors.InvalidSubmission("Bad Content-Length header.") from None
        if length > settings.BLINDSPOT_WORKER_MAX_BODY:
            raise errors.PayloadTooLarge(
                f"The request is larger than {settings.BLINDSPOT_WORKER_MAX_BODY} bytes."
            )
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, errors.WorkError):
            return Response(_error(exc), status=exc.status, headers=NO_STORE)
        if isinstance(exc, exceptions.APIException):
            detail = exc.detail if isinstance(exc.detail, str) else "The request is not valid."
            code = exc.default_code if exc.status_code != 400 else "malformed"
            return Response({"error": code, "detail": str(detail)}, exc.status_code, NO_STORE)
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for header, value in NO_STORE.items():
            response[header] = value
        return response

    def body(self, request: Request) -> dict[str, Any]:
        data = request.data
        if not isinstance(data, dict):
            raise errors.InvalidSubmission("The body must be a JSON object.")
        return data

    def answers(self, request: Request, *, required: bool) -> Any:
        data = self.body(request)
        if "answers" not in data:
            if required:
                raise errors.InvalidSubmission("The body must hold 'answers'.")
            return None
        return data["answers"]


class LeaseView(WorkerAPIView):
    """POST {"worker_id"?} → 201 {"token", "url"}: lease an assignment (or resume one)."""

    def post(self, request: Request, study_key: str) -> Response:
        study = leasing.study_for_key(study_key)
        data = self.body(request) if request.body else {}
        worker_id = data.get("worker_id")
        if worker_id is not None and not isinstance(worker_id, str):
            raise errors.InvalidSubmission("'worker_id' must be a string.")
        lease = leasing.lease_acquire(study=study, worker_id=worker_id or None)
        token = lease_token(lease)
        url = reverse("annotate:work", kwargs={"token": token})
        return Response({"token": token, "url": url}, status=201)


class WorkView(WorkerAPIView):
    """GET → the items (opaque keys and image URLs), saved answers and progress."""

    def get(self, request: Request, token: str) -> Response:
        return Response(leasing.lease_payload(leasing.lease_from_token(token)))


class AnswersView(WorkerAPIView):
    """PUT/POST {"answers": [{"item", "label", "ms"}]} → autosave; {"answered": n}."""

    def put(self, request: Request, token: str) -> Response:
        lease = leasing.lease_from_token(token)
        answered = leasing.answers_save(lease=lease, answers=self.answers(request, required=True))
        return Response({"answered": answered})

    post = put


class SubmitView(WorkerAPIView):
    """POST {"answers": [...]} → {"completion_code", "done_url"}; replays give the same code."""

    def post(self, request: Request, token: str) -> Response:
        lease = leasing.lease_from_token(token)
        code = leasing.lease_submit(lease=lease, answers=self.answers(request, required=False))
        done = reverse("annotate:work-done", kwargs={"token": token})
        return Response({"completion_code": code, "done_url": done})


@require_GET
def image(request: HttpRequest, token: str, item_key: str) -> HttpResponse:
    """The PNG of one item of this lease, read through the storage API; nothing else."""
    try:
        lease = leasing.lease_from_token(token)
    except errors.WorkError as exc:
        return JsonResponse(_error(exc), status=exc.status, headers=NO_STORE)
    item = (
        Item.objects.filter(assignment_id=lease.assignment_id, key=item_key)
        .select_related("stimulus")
        .first()
    )
    if item is None:
        return JsonResponse(
            {"error": "not_found", "detail": "No such image in this task."},
            status=404,
            headers=NO_STORE,
        )
    with item.stimulus.image.open("rb") as fh:
        data = fh.read()
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    return response
