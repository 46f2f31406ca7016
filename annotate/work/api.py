"""Worker API: lease, fetch items (with their pixels), autosave, submit — for the labeling page.

No login and no cookies (the page often runs in a third-party iframe); the signed token in the
URL names the lease. Only JSON goes out (no browsable API and no OPTIONS metadata, which would
describe the views), every error is ``{"error": code, "detail": message}`` with a 4xx status
(5xx only for our own faults, without a traceback), and nothing names a label, target, model,
defense or condition.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.urls import reverse
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import errors
from annotate.providers.registry import provider_for
from annotate.work.answers import answers_save, lease_submit
from annotate.work.leases import lease_acquire, lease_from_token, study_for_key
from annotate.work.payload import lease_serve
from annotate.work.serializers import (
    AnswersInput,
    LeaseInput,
    LeaseOutput,
    SavedOutput,
    SubmitInput,
    SubmitOutput,
    parse,
)
from annotate.work.throttles import LEASE_THROTTLES, ClientWorkThrottle
from annotate.work.tokens import lease_token
from config.edge import BoundedJSONParser
from robustness.errors import BlindspotError

logger = logging.getLogger(__name__)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
SERVER_ERROR = {
    "error": "server_error",
    "detail": "Something went wrong on our side; please retry.",
}


class WorkerAPIView(APIView):
    """Base of the worker endpoints: anonymous, JSON only, size-limited, uniform errors."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ClientWorkThrottle]
    renderer_classes = [JSONRenderer]
    parser_classes = [BoundedJSONParser]
    metadata_class = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Refuse an oversized body by its Content-Length, before anything reads or parses it."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise errors.InvalidSubmission("Bad Content-Length header.") from None
        if length > settings.BLINDSPOT_WORKER_MAX_BODY:
            raise errors.PayloadTooLarge(
                f"The request is larger than {settings.BLINDSPOT_WORKER_MAX_BODY} bytes."
            )
        super().initial(request, *args, **kwargs)

    def check_throttles(self, request: Request) -> None:
        """The throttles in order, stopping at the first refusal: a client over its own limit
        spends nothing of the study's (one client cannot use up everyone's share)."""
        for throttle in self.get_throttles():
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())

    def handle_exception(self, exc: Exception) -> Response:
        """Every failure as ``{"error", "detail", "hint"}``; unexpected ones logged, never
        described."""
        if isinstance(exc, Http404):  # e.g. a ?format= no renderer serves
            exc = exceptions.NotFound()
        elif isinstance(exc, DjangoPermissionDenied):
            exc = exceptions.PermissionDenied()
        if isinstance(exc, BlindspotError):
            return Response(exc.as_json(), status=exc.status, headers=NO_STORE)
        if isinstance(exc, exceptions.Throttled):
            wait = max(1, round(exc.wait or 1))
            body = {
                "error": "throttled",
                "detail": "Too many requests from here right now.",
                "hint": f"Please try again in {wait} seconds.",
            }
            return Response(body, 429, headers={**NO_STORE, "Retry-After": str(wait)})
        if isinstance(exc, exceptions.APIException):
            detail = exc.detail if isinstance(exc.detail, str) else "The request is not valid."
            code = exc.default_code if exc.status_code != 400 else "malformed"
            body = {"error": code, "detail": str(detail), "hint": ""}
            return Response(body, exc.status_code, headers=NO_STORE)
        logger.exception("worker API: unexpected error in %s", type(self).__name__)
        return Response(SERVER_ERROR, status=500, headers=NO_STORE)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for header, value in NO_STORE.items():
            response[header] = value
        return response

    def data(self, request: Request) -> Any:
        """The parsed JSON body; an empty body (whatever its Content-Type) is ``{}``."""
        return request.data if request.body else {}


class LeaseView(WorkerAPIView):
    """POST {"worker_id"?, "attempt"?} → 201 {"token", "url"}: lease an assignment, or resume
    the one this client (the same ``attempt``) took."""

    throttle_classes = [*LEASE_THROTTLES]

    def post(self, request: Request, study_key: str) -> Response:
        study = study_for_key(study_key)
        if not provider_for(study).api_leasing:
            raise errors.InvalidSubmission(
                "This study recruits through its provider's page; open the task there."
            )
        data = parse(LeaseInput, self.data(request))
        lease = lease_acquire(
            study=study,
            worker_id=data.get("worker_id") or None,
            attempt=data.get("attempt") or "",
        )
        token = lease_token(lease)
        url = reverse("annotate:work", kwargs={"token": token})
        return Response(LeaseOutput({"token": token, "url": url}).data, status=201)


class WorkView(WorkerAPIView):
    """GET → the items (opaque keys and inline images), saved answers and progress."""

    def get(self, request: Request, token: str) -> Response:
        return Response(lease_serve(lease_from_token(token)))


class AnswersView(WorkerAPIView):
    """PUT/POST {"answers": [{"item", "label", "ms"}]} → autosave; {"answered": n}."""

    def put(self, request: Request, token: str) -> Response:
        lease = lease_from_token(token, current=False)  # the save records an expiry
        answers = parse(AnswersInput, self.data(request))["answers"]
        answered = answers_save(lease=lease, answers=answers)
        return Response(SavedOutput({"answered": answered}).data)

    post = put


class SubmitView(WorkerAPIView):
    """POST {"answers"?: [...]} → {"completion_code", "done_url"}; replays give the same code."""

    def post(self, request: Request, token: str) -> Response:
        lease = lease_from_token(token, current=False)  # the submit records an expiry
        answers = parse(SubmitInput, self.data(request)).get("answers")
        code = lease_submit(lease=lease, answers=answers)
        done = reverse("annotate:work-done", kwargs={"token": token})
        return Response(SubmitOutput({"completion_code": code, "done_url": done}).data)
