"""The Prolific webhook: signature, age and replay checks, and the reconcile path it feeds."""

from __future__ import annotations

import json
import time

import pytest
from django.urls import reverse

from annotate.models import Lease
from annotate.prolific.hooks import signature
from annotate.prolific.models import ProlificHookEvent, ProlificSubmission
from tests.annotate.prolific.helpers import arrival, prolific_study

pytestmark = pytest.mark.django_db
SECRET = "hook-secret-for-tests"


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.PROLIFIC_WEBHOOK_SECRET = SECRET


def deliver(client, event: dict, *, secret: str = SECRET, ts: int | None = None, event_id="E1"):
    body = json.dumps(event).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    return client.post(
        reverse("prolific-hooks:hook"),
        body,
        content_type="application/json",
        HTTP_X_PROLIFIC_REQUEST_TIMESTAMP=stamp,
        HTTP_X_PROLIFIC_REQUEST_SIGNATURE=signature(secret, stamp, body),
        HTTP_X_EVENT_ID=event_id,
    )


def leased(client):
    study = prolific_study()
    data = {**arrival(study), "consent": "yes"}
    client.post(reverse("annotate:study-start", args=[study.key]), data)
    return study, Lease.objects.get()


def returned(study) -> dict:
    return {
        "event_type": "submission.status.change",
        "resource_id": "S1",
        "status": "RETURNED",
        "study_id": study.prolific_studies.get().prolific_id,
        "participant_id": "P1",
    }


def test_a_signed_return_frees_the_assignment(client):
    study, lease = leased(client)
    response = deliver(client, returned(study))
    assert response.status_code == 200 and response.json()["applied"] is True
    lease.refresh_from_db()
    assert lease.status == Lease.Status.EXPIRED
    assert ProlificSubmission.objects.get(submission_id="S1").status == "RETURNED"


@pytest.mark.parametrize(
    "how", ["wrong secret", "stale", "no headers", "body changed after signing"]
)
def test_unsigned_or_forged_deliveries_change_nothing(client, how):
    study, lease = leased(client)
    event = returned(study)
    if how == "wrong secret":
        response = deliver(client, event, secret="guess")
    elif how == "stale":
        response = deliver(client, event, ts=int(time.time()) - 3600)
    elif how == "no headers":
        response = client.post(
            reverse("prolific-hooks:hook"), json.dumps(event), content_type="application/json"
        )
    else:
        stamp = str(int(time.time()))
        signed = json.dumps({**event, "status": "ACTIVE"}).encode()
        response = client.post(
            reverse("prolific-hooks:hook"),
            json.dumps(event),
            content_type="application/json",
            HTTP_X_PROLIFIC_REQUEST_TIMESTAMP=stamp,
            HTTP_X_PROLIFIC_REQUEST_SIGNATURE=signature(SECRET, stamp, signed),
        )
    assert response.status_code == 403
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE
    assert not ProlificHookEvent.objects.exists()


def test_a_redelivery_is_applied_once(client):
    study, _ = leased(client)
    assert deliver(client, returned(study)).json()["applied"] is True
    again = deliver(client, returned(study))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert ProlificHookEvent.objects.count() == 1


def test_without_a_secret_the_hook_is_closed(client, settings):
    settings.PROLIFIC_WEBHOOK_SECRET = ""
    study, lease = leased(client)
    assert deliver(client, returned(study)).status_code == 404
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"{" * 5000])
def test_malformed_bodies_are_4xx(client, body):
    stamp = str(int(time.time()))
    response = client.post(
        reverse("prolific-hooks:hook"),
        body,
        content_type="application/json",
        HTTP_X_PROLIFIC_REQUEST_TIMESTAMP=stamp,
        HTTP_X_PROLIFIC_REQUEST_SIGNATURE=signature(SECRET, stamp, body),
    )
    assert 400 <= response.status_code < 500


def test_an_event_for_someone_elses_study_is_ignored(client):
    prolific_study()
    event = {
        "event_type": "submission.status.change",
        "resource_id": "X",
        "status": "RETURNED",
        "study_id": "NOT-OURS",
    }
    response = deliver(client, event)
    assert response.status_code == 200 and response.json()["applied"] is False
    assert not ProlificSubmission.objects.exists()
