"""The worker API over HTTP: the happy path, and every malformed request refused with a 4xx."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone

from annotate.models import Answer, Event, Lease, Worker
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)  # as in a third-party frame: no CSRF cookie


def lease_for(client, study, worker="w", attempt=None):
    data = {"worker_id": worker} if attempt is None else {"worker_id": worker, "attempt": attempt}
    r = client.post(
        f"/api/work/studies/{study.key}/lease",
        data=json.dumps(data),
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
        "items", "answers", "total", "answered", "expires", "deadline", "status",
        "completion_code",
    }  # fmt: skip
    assert payload["deadline"] is None  # the study link sets no time limit of its own
    assert payload["total"] == 5 and payload["answered"] == 0
    png = base64.b64decode(payload["items"][0]["image"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG")
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
    _, other = lease_for(client, study, "b")
    before = state()
    put = lambda t, body, **kw: client.put(  # noqa: E731
        f"/api/work/{t}/answers", data=body, content_type=kw.get("ct", "application/json")
    )
    foreign = json.dumps({"answers": all_answers(other)[:1]})
    assert put(token, foreign).status_code == 400
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


@pytest.fixture
def world(client, settings):
    """Two leases of one study: "a" active with one autosaved answer, "b" submitted."""
    settings.BLINDSPOT_WORKER_MAX_BODY = 4000
    study = make_study(n_assignments=3, size=5)
    a, a_payload = lease_for(client, study, "a")
    b, b_payload = lease_for(client, study, "b")
    mine, theirs = all_answers(a_payload), all_answers(b_payload)
    put = client.put(
        f"/api/work/{a}/answers", json.dumps({"answers": mine[:1]}), "application/json"
    )
    assert put.status_code == 200
    done = client.post(f"/api/work/{b}/submit", json.dumps({"answers": theirs}), "application/json")
    assert done.status_code == 200
    forged = a[:-2] + ("AA" if a[-2:] != "AA" else "BB")
    return {"study": study, "a": a, "b": b, "mine": mine, "theirs": theirs, "forged": forged}


def everything():
    """All rows a refused request must leave exactly as they were."""
    return (
        sorted(Answer.objects.values_list("lease_id", "item_id", "label", "response_ms", "saved")),
        sorted(Lease.objects.values_list("id", "status", "expires", "submitted")),
        Event.objects.count(),
        Worker.objects.count(),
    )


def body(data) -> str:
    return json.dumps(data)


def one(**change):
    """A body that saves worker a's second answer, changed."""
    return lambda w: body({"answers": [{**w["mine"][1], **change}]})


REFUSED = [
    # name, method, path, raw body, status, error code, words in the detail
    ("wrong count", "post", "{a}/submit", lambda w: body({"answers": w["mine"][:3]}),
     400, "invalid_answers", "3 of 5"),
    ("bad label", "put", "{a}/answers", one(label="A"), 400, "invalid_answers", "label"),
    ("two digits", "put", "{a}/answers", one(label="12"), 400, "invalid_answers", "label"),
    ("unknown item", "put", "{a}/answers", one(item="zz"), 400, "invalid_answers", "not in"),
    ("foreign item", "put", "{a}/answers", lambda w: body({"answers": w["theirs"][:1]}),
     400, "invalid_answers", "not in this task"),
    ("foreign item in a submit", "post", "{a}/submit",
     lambda w: body({"answers": w["mine"][:4] + w["theirs"][:1]}),
     400, "invalid_answers", "not in this task"),
    ("same item twice", "put", "{a}/answers", lambda w: body({"answers": [w["mine"][1]] * 2}),
     400, "invalid_answers", "repeats"),
    ("too many", "put", "{a}/answers", lambda w: body({"answers": w["mine"] + w["theirs"][:1]}),
     400, "invalid_answers", "6 answers"),
    ("time out of range", "put", "{a}/answers", one(ms=3_600_001),
     400, "invalid_answers", "response time"),
    ("answers not a list", "put", "{a}/answers", lambda w: body({"answers": "4444"}),
     400, "invalid_answers", "'answers'"),
    ("answers missing", "put", "{a}/answers", lambda w: body({}),
     400, "invalid_answers", "'answers': This field is required"),
    ("body not an object", "post", "{a}/submit", lambda w: body([1, 2]),
     400, "invalid_answers", "JSON object"),
    ("non-JSON body", "put", "{a}/answers", lambda w: "{not json",
     400, "malformed", "JSON"),
    ("forged token", "post", "{forged}/submit", lambda w: body({"answers": w["mine"]}),
     403, "invalid_token", "not valid"),
    ("forged token fetch", "get", "{forged}", lambda w: "", 403, "invalid_token", "not valid"),
    ("oversized body", "put", "{a}/answers", one(item="x" * 5000), 413, "too_large", "4000 bytes"),
    ("oversized lease request", "post", "studies/{key}/lease",
     lambda w: body({"worker_id": "c" * 5000}), 413, "too_large", "4000 bytes"),
    ("other answers after submit", "post", "{b}/submit",
     lambda w: body({"answers": [{**x, "label": "7"} for x in w["theirs"]]}),
     409, "already_submitted", "already submitted"),
    ("autosave after submit", "put", "{b}/answers", lambda w: body({"answers": w["theirs"][:1]}),
     409, "already_submitted", "already submitted"),
    ("worker id not a string", "post", "studies/{key}/lease", lambda w: body({"worker_id": 5}),
     400, "invalid_answers", "'worker_id'"),
    ("worker id with markup", "post", "studies/{key}/lease",
     lambda w: body({"worker_id": "<b>x</b>"}), 400, "invalid_answers", "worker id"),
    ("worker id too long", "post", "studies/{key}/lease", lambda w: body({"worker_id": "c" * 101}),
     400, "invalid_answers", "'worker_id'"),
    ("wrong method", "get", "{a}/answers", lambda w: "", 405, "method_not_allowed", "GET"),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_each_refused_request_gets_a_4xx_with_a_message_and_changes_nothing(client, world, case):
    _, method, path, make_body, status, code, words = case
    before = everything()
    url = "/api/work/" + path.format(key=world["study"].key, **world)
    if method == "get":
        r = client.get(url)
    else:
        r = getattr(client, method)(url, make_body(world), content_type="application/json")
    assert r.status_code == status, r.content
    assert r.json()["error"] == code and words in r.json()["detail"], r.json()
    assert r["Cache-Control"] == "no-store" and r["Content-Type"] == "application/json"
    assert everything() == before


def test_an_expired_lease_refuses_saves_and_submits_and_keeps_its_drafts(client, world):
    Lease.objects.filter(worker__external_id="a").update(
        expires=timezone.now() - dt.timedelta(seconds=1)
    )
    r = client.put(
        f"/api/work/{world['a']}/answers", body({"answers": world["mine"][1:2]}), "application/json"
    )
    assert r.status_code == 410 and "ran out" in r.json()["detail"]
    before = everything()  # the first refusal expired the lease (and logged it); now nothing
    for method, path, data in (
        (client.post, "submit", {"answers": world["mine"]}),
        (client.put, "answers", {"answers": world["mine"][1:2]}),
    ):
        r = method(f"/api/work/{world['a']}/{path}", body(data), "application/json")
        assert r.status_code == 410 and r.json()["error"] == "expired"
    assert client.get(f"/api/work/{world['a']}").status_code == 410
    assert everything() == before
    expired = Lease.objects.get(worker__external_id="a")
    assert expired.status == Lease.Status.EXPIRED and expired.answers.count() == 1


def test_form_bodies_are_refused_as_unsupported(client, world):
    before = everything()
    r = client.put(
        f"/api/work/{world['a']}/answers", "label=1", "application/x-www-form-urlencoded"
    )
    assert r.status_code == 415 and r.json()["detail"]
    assert everything() == before


def test_the_same_worker_entering_again_resumes_the_same_lease(client):
    study = make_study(n_assignments=3)
    first, payload = lease_for(client, study, "panel-7", attempt="client-a")
    client.put(
        f"/api/work/{first}/answers",
        body({"answers": all_answers(payload)[:2]}),
        content_type="application/json",
    )
    again, resumed = lease_for(client, study, "panel-7", attempt="client-a")
    assert again == first and Lease.objects.count() == 1
    assert resumed["answered"] == 2 and resumed["items"] == payload["items"]
    other, _ = lease_for(client, study, "panel-8")
    assert other != first
    anonymous = client.post(f"/api/work/studies/{study.key}/lease", b"", "text/plain")  # no body
    assert anonymous.status_code == 201 and anonymous.json()["token"] not in (first, other)
    assert Worker.objects.filter(source=Worker.Source.ANONYMOUS).count() == 1
    assert Event.objects.filter(kind=Event.Kind.LEASED).count() == 3


def test_an_unexpected_error_is_a_bare_500_even_in_debug(client, settings, monkeypatch):
    settings.DEBUG = True
    study = make_study(n_assignments=1)
    token, _ = lease_for(client, study)

    def broken(lease):
        raise RuntimeError("secret internals of lease_payload")

    monkeypatch.setattr("annotate.work.api.lease_serve", broken)
    r = client.get(f"/api/work/{token}")
    assert r.status_code == 500 and r.json()["error"] == "server_error"
    assert b"secret" not in r.content and b"Traceback" not in r.content
    assert r["Cache-Control"] == "no-store"
