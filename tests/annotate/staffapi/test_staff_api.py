"""Staff API: staff only (anonymous, non-staff and worker tokens get nothing), correct data,
results equal to study_results(), parseable exports, a valid schema and bounded query counts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.analysis.results import study_results
from annotate.analysis.selectors import RESPONSE_FIELDS, study_responses
from annotate.models import Answer, Lease, StimulusSet, Study
from annotate.work.tokens import lease_token
from tests.annotate.factories import make_model_row, make_set, make_study, work

pytestmark = pytest.mark.django_db


@pytest.fixture
def study() -> Study:
    """Adversarial and clean conditions (a dotted name), one attention check per assignment."""
    model = make_model_row("m.at", defense="at")
    adversarial = make_set(8, name="adv.v1", model=model)
    clean = make_set(8, name="adv-clean", kind=StimulusSet.Kind.CLEAN, model=model)
    StimulusSet.objects.filter(pk=clean.pk).update(parent=adversarial)
    checks = make_set(3, name="checks", kind=StimulusSet.Kind.ATTENTION, first_source=100)
    return make_study([adversarial, clean], n_assignments=5, size=4, attention=checks, name="s.1")


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("boss", password="pw", is_staff=True)


@pytest.fixture
def client(staff) -> APIClient:
    c = APIClient()
    c.force_authenticate(staff)
    return c


def endpoints(study: Study) -> list[str]:
    """Every staff URL: root, schema, docs, lists, details and the study actions."""
    stimulus = study.conditions.get(position=0).set.stimuli.first()
    name = {"name": study.name}
    return [
        "/api/",
        reverse("staff-api:schema"),
        reverse("staff-api:docs"),
        reverse("staff-api:model-list"),
        reverse("staff-api:model-detail", kwargs={"name": "m.at"}),
        reverse("staff-api:set-list"),
        reverse("staff-api:set-detail", kwargs={"name": "adv.v1"}),
        reverse("staff-api:stimulus-list"),
        reverse("staff-api:stimulus-detail", kwargs={"pk": stimulus.pk}),
        reverse("staff-api:study-list"),
        reverse("staff-api:study-detail", kwargs=name),
        reverse("staff-api:study-results", kwargs=name) + "?bootstrap=20",
        reverse("staff-api:study-export", kwargs=name) + "?format=csv",
        reverse("staff-api:study-export", kwargs=name) + "?format=json",
    ]


def assert_refused(response, status: int) -> None:
    """Refused, and the body names nothing of the study (only DRF's error detail)."""
    assert response.status_code == status, response.status_code
    if status == 401:
        assert response["WWW-Authenticate"] == "Token"
    for secret in (b"s.1", b"adv", b"m.at", b"original_label", b"paths"):
        assert secret not in response.content


def test_every_endpoint_refuses_anonymous_and_non_staff_users(study):
    work(study, "alice")
    anonymous = APIClient()
    member = APIClient()
    member.force_authenticate(get_user_model().objects.create_user("member", password="pw"))
    for url in endpoints(study):
        assert_refused(anonymous.get(url), 401)
        assert_refused(member.get(url), 403)


def test_an_inactive_staff_users_token_is_refused(study, staff):
    token = Token.objects.create(user=staff)
    staff.is_active = False
    staff.save()
    for url in endpoints(study):
        assert_refused(APIClient().get(url, HTTP_AUTHORIZATION=f"Token {token.key}"), 401)


def test_a_workers_lease_token_gets_nothing(study):
    token = lease_token(work(study, "alice", submit=False))
    anonymous = APIClient()
    for url in endpoints(study):
        glue = "&" if "?" in url else "?"
        for response in (
            anonymous.get(url, HTTP_AUTHORIZATION=f"Token {token}"),
            anonymous.get(url, HTTP_AUTHORIZATION=f"Bearer {token}"),
            anonymous.get(f"{url}{glue}token={token}"),
        ):
            assert_refused(response, 401)


def test_staff_token_and_session_both_work(study, staff):
    token = Token.objects.create(user=staff)
    url = reverse("staff-api:study-detail", kwargs={"name": study.name})
    assert APIClient().get(url, HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200
    session = APIClient()
    assert session.login(username="boss", password="pw")
    assert session.get(url).json()["name"] == "s.1"
    assert session.get(reverse("staff-api:docs")).status_code == 200


def test_models_and_sets_by_name_with_filters(client, study):
    make_model_row("plain", defense="none")
    models = client.get(reverse("staff-api:model-list")).json()
    assert models["count"] == 3  # m.at, plain and the attention set's model
    assert "history" not in models["results"][0]
    at = client.get(reverse("staff-api:model-list"), {"defense": "at"}).json()["results"]
    assert [m["name"] for m in at] == ["m.at"]
    detail = client.get(reverse("staff-api:model-detail", kwargs={"name": "m.at"})).json()
    assert detail["defense"] == "at" and detail["history"] == [] and "hyperparameters" in detail
    assert client.get(reverse("staff-api:model-list"), {"status": "nope"}).status_code == 400

    sets = client.get(reverse("staff-api:set-list"), {"model": "m.at"}).json()["results"]
    assert sorted(s["name"] for s in sets) == ["adv-clean", "adv.v1"]
    clean = client.get(reverse("staff-api:set-detail", kwargs={"name": "adv-clean"})).json()
    assert clean["parent"] == "adv.v1" and clean["stimuli_count"] == 8
    assert clean["model"] == "m.at" and clean["defense"] == "at" and clean["kind"] == "clean"
    kinds = client.get(reverse("staff-api:set-list"), {"kind": "attention"}).json()["results"]
    assert [s["name"] for s in kinds] == ["checks"]
    missing = reverse("staff-api:set-detail", kwargs={"name": "nope"})
    assert client.get(missing).status_code == 404


def test_stimuli_filtered_by_set_and_success_and_paginated(client, study):
    url = reverse("staff-api:stimulus-list")
    everything = client.get(url).json()
    assert everything["count"] == 8 + 8 + 3
    adversarial = client.get(url, {"set": "adv.v1", "success": "true"}).json()
    assert adversarial["count"] == 8
    assert {s["set"] for s in adversarial["results"]} == {"adv.v1"}
    first = adversarial["results"][0]
    assert first["target"] == (first["original_label"] + 1) % 10
    assert first["image"].startswith("http://testserver/")
    assert client.get(url, {"set": "adv.v1", "success": "false"}).json()["count"] == 0
    assert client.get(url, {"success": "false"}).json()["count"] == 8 + 3
    assert client.get(url, {"success": "maybe"}).status_code == 400
    page = client.get(url, {"page_size": 5, "page": 2}).json()
    assert len(page["results"]) == 5 and page["next"] and page["previous"]


def test_study_detail_has_conditions_and_live_progress(client, study):
    work(study, "alice")
    work(study, "bob", submit=False)
    stale = work(study, "carol", submit=False)
    Lease.objects.filter(pk=stale.pk).update(expires=timezone.now() - dt.timedelta(seconds=1))
    data = client.get(reverse("staff-api:study-detail", kwargs={"name": "s.1"})).json()
    assert [(c["position"], c["set"], c["kind"]) for c in data["conditions"]] == [
        (0, "adv.v1", "adversarial"),
        (1, "adv-clean", "clean"),
    ]
    assert data["conditions"][0]["defense"] == "at"
    assert data["progress"] == {  # the console's words (annotate.analysis.progress)
        "assignments": 5,
        "open": 3,
        "leased": 1,
        "submitted": 0,
        "excluded": 1,  # alice's answers miss her attention check: the rule excludes her
        "expired": 1,
        "workers_excluded": 1,
        "answers": Answer.objects.filter(lease__worker__external_id="alice").count(),
    }
    url = reverse("staff-api:study-list")
    assert client.get(url, {"set": "adv-clean"}).json()["count"] == 1
    assert client.get(url, {"status": "closed"}).json()["count"] == 0


def test_results_equal_study_results(client, study):
    for i, worker in enumerate(["alice", "bob", "carol"]):
        work(study, worker, offset=i)
    url = reverse("staff-api:study-results", kwargs={"name": "s.1"})
    got = client.get(url, {"seed": 3, "bootstrap": 50}).json()
    expected = study_results(study=study, seed=3, bootstrap=50)
    assert got == json.loads(json.dumps(expected))
    assert got["bootstrap"]["replicates"] == 50
    assert client.get(url, {"bootstrap": 0}).status_code == 400
    assert client.get(url, {"seed": "x"}).status_code == 400


def test_export_csv_and_json_hold_the_rows_of_study_responses(client, study):
    work(study, "alice")
    work(study, "bob", submit=False)
    url = reverse("staff-api:study-export", kwargs={"name": "s.1"})
    expected = study_responses(study=study)
    as_json = client.get(url, {"format": "json"})
    assert as_json["Content-Type"] == "application/json"
    assert as_json.json() == json.loads(json.dumps(expected))
    as_csv = client.get(url, {"format": "csv"})
    assert as_csv["Content-Type"].startswith("text/csv")
    assert "attachment" in as_csv["Content-Disposition"]
    reader = csv.DictReader(io.StringIO(as_csv.content.decode()))
    assert tuple(reader.fieldnames) == RESPONSE_FIELDS
    rows = list(reader)
    assert len(rows) == len(expected) == 4
    assert [r["label"] for r in rows] == [r["label"] for r in expected]
    assert [int(r["original_label"]) for r in rows] == [r["original_label"] for r in expected]
    drafts = client.get(url, {"format": "json", "drafts": "true"}).json()
    assert len(drafts) == len(study_responses(study=study, include_drafts=True)) == 6
    assert client.get(url, {"format": "xml"}).status_code == 404
    missing = client.get(
        reverse("staff-api:study-export", kwargs={"name": "no"}), {"format": "csv"}
    )
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"


def test_schema_validates_and_documents_only_the_staff_api(tmp_path):
    out = tmp_path / "schema.json"
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--format",
        "openapi-json",
        "--file",
        str(out),
    )
    paths = json.loads(out.read_text())["paths"]
    assert "/api/studies/{name}/results/" in paths and "/api/studies/{name}/export/" in paths
    assert {"/api/jobs/", "/api/jobs/{id}/"} <= set(paths)
    assert "post" in paths["/api/jobs/{id}/cancel/"] and "post" in paths["/api/jobs/{id}/retry/"]
    assert not any(p.startswith("/api/work/") for p in paths)


def test_docs_load_nothing_from_a_cdn(client):
    html = client.get(reverse("staff-api:docs")).content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower()


@pytest.mark.parametrize("route", ["model-list", "set-list", "stimulus-list", "study-list"])
def test_list_queries_do_not_grow_with_rows(client, route):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse(f"staff-api:{route}")).status_code == 200
        return len(ctx)

    make_study([make_set(4), make_set(4)], n_assignments=2, size=4)
    few = count()
    for _ in range(3):
        study = make_study([make_set(4), make_set(4)], n_assignments=2, size=4)
        work(study, f"w-{study.pk}")
    assert count() == few
