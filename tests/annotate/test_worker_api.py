"""The worker API over HTTP: the happy path, and every malformed request refused with a 4xx."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone

from annotate.models import Answer, Event, Lease
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)  # as in a third-party frame: no CSRF cookie


def lease_for(client, study, worker="w"):
    r = client.post(
        f"/api/work/studies/{study.key}/lease",
        data=json.dumps({"worker_id": worker}),
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    token = r.json()["token"]
    return token, client.get(f"/api/work/{token}").json()


def all_answers(payload, label="4"):
    return [{"item": it["key"], "label": label, "ms": 700} for it in payload["items"]]


def state():
    return (
        sorted(Answer.objects.values_list("lease_id", "item_id", "label", "response_ms")),
        sorted(Lease.objects.values_list("id", "status")),
    )


def test_whole_flow_with_autosave_reload_and_submit(client):
    study = make_study(n_assignments=2, size=5)
    token, payload = lease_for(client, study)
    assert set(payload) == {
        "items", "answers", "total", "answered", "expires", "status", "completion_code"
    }  # fmt: skip
    assert payload["total"] == 5 and payload["answered"] == 0
    png = client.get(payload["items"][0]["image"])
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    answers = all_answers(payload)
    r = client.put(
        f"/api/work/{token}/answers",
        data=json.dumps({"answers": answers[:2]}),
        content_type="application/json",
    )
    assert r.status_code == 200 and r.json() == {"answered": 2}
    again = client.get(f"/api/work/{token}").json()  # a reload sees the autosaved answers
    assert again["answered"] == 2 and again["answers"][answers[0]["item"]]["label"] == "4"
    r = client.post(
        f"/api/work/{token}/submit",
        data=json.dumps({"answers": answers}),
        content_type="application/json",
    )
    assert r.status_code == 200
    code = r.json()["completion_code"]
    assert Lease.objects.get(completion_code=code).status == Lease.Status.SUBMITTED
    r = client.post(
        f"/api/work/{token}/submit",
        data=json.dumps({"answers": answers}),
        content_type="application/json",
    )
    assert r.status_code == 200 and r.json()["completion_code"] == code
    assert Answer.objects.count() == 5
    kinds = list(Event.objects.values_list("kind", flat=True))
    assert kinds[0] == "leased" and kinds.count("submitted") == 1 and "served" in kinds


def test_responses_are_not_cached_and_options_describe_nothing(client):
    study = make_study(n_assignments=1)
    token, _ = lease_for(client, study)
    r = client.get(f"/api/work/{token}")
    assert r["Cache-Control"] == "no-store" and r["Referrer-Policy"] == "no-referrer"
    r = client.options(f"/api/work/{token}")
    assert b"description" not in r.content and b"Worker" not in r.content
    r = client.get(f"/api/work/{token}", HTTP_ACCEPT="text/html")
    assert not r.content.lstrip().startswith(b"<")  # no browsable API


BAD = [
    ("wrong count", "submit", lambda a: {"answers": a[:3]}, 400, "invalid_answers"),
    ("bad label", "answers", lambda a: {"answers": [{**a[0], "label": "A"}]}, 400, None),
    ("unknown item", "answers", lambda a: {"answers": [{**a[0], "item": "zz"}]}, 400, None),
    ("not a list", "answers", lambda a: {"answers": {"x": 1}}, 400, None),
    ("missing answers", "answers", lambda a: {"nope": []}, 400, None),
    ("body not an object", "answers", lambda a: [1, 2], 400, None),
]


@pytest.mark.parametrize("name, endpoint, body, status, code", BAD, ids=[b[0] for b in BAD])
def test_malformed_requests_get_4xx_and_change_nothing(client, name, endpoint, body, status, code):
    study = make_study(n_assignments=1)
    token, payload = lease_for(client, study)
    before = state()
    method = client.post if endpoint == "submit" else client.put
    r = method(
        f"/api/work/{token}/{endpoint}",
        data=json.dumps(body(all_answers(payload))),
        content_type="application/json",
    )
    assert r.status_code == status
    assert r.json()["detail"] and (code is None or r.json()["error"] == code)
    assert state() == before


def test_foreign_item_expired_lease_forged_token_oversized_and_non_json(client, settings):
    study = make_study(n_assignments=2)
    token, payload = lease_for(client, study, "a")
    other_token, other = lease_for(client, study, "b")
    before = state()
    put = lambda t, body, **kw: client.put(  # noqa: E731
        f"/api/work/{t}/answers", data=body, content_type=kw.get("ct", "application/json")
    )
    foreign = json.dumps({"answers": all_answers(other)[:1]})
    assert put(token, foreign).status_code == 400
    # an image of another lease is not reachable with this token
    assert client.get(other["items"][0]["image"].replace(other_token, token)).status_code == 404
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert put(forged, json.dumps({"answers": []})).status_code == 403
    assert client.get(f"/api/work/{forged}").json()["error"] == "invalid_token"
    settings.BLINDSPOT_WORKER_MAX_BODY = 1000
    huge = json.dumps({"answers": [{"item": "x" * 2000, "label": "1"}]})
    r = put(token, huge)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert put(token, "{not json").status_code == 400
    assert put(token, "label=1", ct="application/x-www-form-urlencoded").status_code == 415
    assert state() == before
    Lease.objects.filter(worker__external_id="a").update(
        expires=timezone.now() - dt.timedelta(seconds=1)
    )
    r = put(token, json.dumps({"answers": all_answers(payload)[:1]}))
    assert r.status_code == 410 and r.json()["error"] == "expired"
    assert Answer.objects.count() == 0


def test_lease_endpoint_errors(client):
    closed = make_study(n_assignments=1, status="closed")
    r = client.post(f"/api/work/studies/{closed.key}/lease")
    assert r.status_code == 410 and r.json()["error"] == "closed"
    assert client.post("/api/work/studies/nope/lease").status_code == 404
    full = make_study(n_assignments=1)
    lease_for(client, full, "a")
    r = client.post(
        f"/api/work/studies/{full.key}/lease",
        data=json.dumps({"worker_id": "b"}),
        content_type="application/json",
    )
    assert r.status_code == 409 and r.json()["error"] == "full"
    r = client.post(
        f"/api/work/studies/{full.key}/lease",
        data=json.dumps({"worker_id": 5}),
        content_type="application/json",
    )
    assert r.status_code == 400
