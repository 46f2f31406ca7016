"""Every byte of a request is read or refused (findings 2 and 3 of the hostile-worker review)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from annotate.models import Answer, Lease, Worker
from annotate.work.tokens import lease_token
from config.edge import MAX_JSON_DEPTH, json_depth
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def leased(client):
    study = make_study(n_assignments=2, size=3)
    start = reverse("annotate:study-start", args=[study.key])
    client.post(start, {"worker_id": "w1", "attempt": "a" * 22, "consent": "yes"})
    lease = Lease.objects.get()
    return study, lease, lease_token(lease)


def test_a_chunked_submit_is_refused_not_submitted_with_the_old_answers(client, leased):
    study, lease, token = leased
    first = lease.assignment.items.order_by("position").first()
    client.put(
        reverse("annotate:api-answers", args=[token]),
        json.dumps({"answers": [{"item": first.key, "label": "1"}]}),
        "application/json",
    )
    answers = [{"item": i.key, "label": "9"} for i in lease.assignment.items.all()]
    response = client.generic(
        "POST",
        reverse("annotate:api-submit", args=[token]),
        json.dumps({"answers": answers}),
        "application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",  # as a server passes a chunked body: no length
    )
    assert response.status_code == 411 and response.json()["error"] == "length_required"
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE  # nothing acted on a body nobody read
    assert list(Answer.objects.values_list("label", flat=True)) == ["1"]


def test_a_chunked_request_on_the_wire_is_refused(live_server, leased):
    _, lease, token = leased
    url = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    body = json.dumps({"answers": []}).encode()
    conn.putrequest("POST", reverse("annotate:api-submit", args=[token]))
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    response = conn.getresponse()
    assert response.status == 411
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE


@pytest.mark.parametrize(
    "length", ["abc", "-5", "1e3", " 12"], ids=["letters", "negative", "float", "space"]
)
def test_a_content_length_that_is_not_a_number_is_refused(client, leased, length):
    _, _, token = leased
    response = client.generic(
        "PUT", reverse("annotate:api-answers", args=[token]), b"{}", "application/json",
        CONTENT_LENGTH=length,
    )  # fmt: skip
    assert response.status_code == 400 and response.json()["error"] == "bad_length"


@pytest.mark.parametrize("where", ["study key", "query", "form"])
def test_a_nul_byte_is_a_400_with_no_trace_of_it_anywhere(client, leased, where, settings):
    settings.DEBUG = True  # the debug page once showed other participants' ids here
    study, _, _ = leased
    workers = Worker.objects.count()
    if where == "study key":
        response = client.get(f"/s/{study.key}%00/")
    elif where == "query":
        response = client.get(f"/s/{study.key}/", {"worker_id": "w\x00x"})
    else:
        response = client.post(
            f"/s/{study.key}/start",
            {"worker_id": "w2", "assignment_id": "A\x00B", "consent": "yes"},
        )
    assert response.status_code == 400
    assert "w1" not in response.content.decode() and "Traceback" not in response.content.decode()
    assert Worker.objects.count() == workers  # no stray row behind


def test_staff_api_filters_with_control_characters_are_400(admin_client, leased):
    response = admin_client.get("/api/studies/", {"set": "a\x00b"})
    assert response.status_code == 400 and response.json()["error"] == "control_character"


def test_deep_or_dirty_json_is_refused_before_anything_acts(client, leased):
    _, lease, token = leased
    url = reverse("annotate:api-answers", args=[token])
    deep = "[" * 20_000 + "]" * 20_000
    for body, word in (
        (deep, "nested"),
        ('{"answers": [{"item": "x\\u0000", "label": "1"}]}', "control character"),
        ('{"answers": [{"item": "\\ud800", "label": "1"}]}', "Unicode"),
        ("{not json", "not valid JSON"),
    ):
        response = client.put(url, body, "application/json")
        assert response.status_code == 400, body[:40]
        assert word in response.json()["detail"]
    assert not Answer.objects.exists()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE


def test_json_depth_counts_nesting_outside_strings():
    assert json_depth(b"{}") == 1
    assert json_depth(b'{"a": [[1], {"b": "[[[[["}]}') == 3
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"[" * (MAX_JSON_DEPTH + 1)) == MAX_JSON_DEPTH + 1
