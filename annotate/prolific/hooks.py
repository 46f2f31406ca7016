"""Prolific's webhook: ``submission.status.change`` events, signature-checked, fed into the same
reconcile path as ``prolific sync`` (which stays the fallback when a delivery is lost).

Prolific signs ``timestamp + body`` with the workspace secret (HMAC-SHA256, base64) and sends
``X-Prolific-Request-Signature`` and ``X-Prolific-Request-Timestamp``; a delivery older than
:data:`MAX_AGE_S`, or one whose ``X-Event-ID`` was seen, changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from annotate.prolific.models import ProlificHookEvent, ProlificStudy, ProlificSubmission
from annotate.prolific.reconcile import apply_submission

logger = logging.getLogger(__name__)

MAX_AGE_S = 300
MAX_BODY = 64 * 1024
SUBMISSION_EVENT = "submission.status.change"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Prolific's signature of a delivery."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _refuse(status: int, error: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": error, "detail": detail}, status=status)


@csrf_exempt  # a server-to-server call, authenticated by its signature
@require_POST
def hook(request: HttpRequest) -> JsonResponse:
    """Accept one signed delivery and apply it."""
    secret = getattr(settings, "PROLIFIC_WEBHOOK_SECRET", "")
    if not secret:
        # No secret, no webhook: nothing here can tell Prolific's deliveries from forgeries.
        return _refuse(404, "not_configured", "PROLIFIC_WEBHOOK_SECRET is not set here")
    body = request.body
    if len(body) > MAX_BODY:
        return _refuse(413, "too_large", "the delivery is too large")
    timestamp = request.headers.get("X-Prolific-Request-Timestamp", "")
    sent = request.headers.get("X-Prolific-Request-Signature", "")
    if not timestamp.isdigit() or not sent:
        return _refuse(403, "unsigned", "signature headers are missing")
    if not hmac.compare_digest(signature(secret, timestamp, body), sent):
        return _refuse(403, "bad_signature", "the signature does not match")
    if abs(time.time() - int(timestamp)) > MAX_AGE_S:
        return _refuse(403, "stale", "the delivery is too old")
    try:
        event = json.loads(body)
    except ValueError:
        return _refuse(400, "malformed", "the body is not JSON")
    if not isinstance(event, dict):
        return _refuse(400, "malformed", "the body is not a JSON object")
    event_type = str(event.get("event_type", ""))
    resource = str(event.get("resource_id", ""))[:64]
    event_id = request.headers.get("X-Event-ID", "") or f"{event_type}:{resource}:{timestamp}"
    try:
        with transaction.atomic():
            ProlificHookEvent.objects.create(
                event_id=event_id[:100],
                event_type=event_type[:100],
                resource_id=resource,
                payload=event,
            )
            applied = _apply(event_type, resource, event)
    except IntegrityError:
        return JsonResponse({"ok": True, "duplicate": True})
    return JsonResponse({"ok": True, "applied": applied})


def _apply(event_type: str, resource: str, event: dict) -> bool:
    """Apply a submission status change to a submission of one of our studies."""
    if event_type != SUBMISSION_EVENT or not resource:
        return False
    row = (
        ProlificSubmission.objects.filter(submission_id=resource)
        .select_related("prolific_study")
        .first()
    )
    remote = (
        row.prolific_study
        if row is not None
        else ProlificStudy.objects.filter(prolific_id=str(event.get("study_id", "")))
        .exclude(prolific_id="")
        .first()
    )
    if remote is None:
        logger.info("prolific hook for a submission of no study of ours: %s", resource)
        return False
    data = {"id": resource, "status": event.get("status")}
    if event.get("participant_id"):
        data["participant_id"] = event["participant_id"]
    elif row is not None:
        data["participant_id"] = row.participant_id
    apply_submission(remote, data)
    return True
