"""The MTurk worker handshake through Django's test client: preview, accept, reload, return and
re-accept, a second HIT refused, previous participants refused, and the externalSubmit form."""

from __future__ import annotations

import base64
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from annotate.models import Item, Lease, Stimulus, StimulusSet, Study, Worker
from annotate.mturk import handshake
from annotate.mturk.models import Hit, HitAssignment
from annotate.stimuli.imaging import canonical_png
from tests.annotate.factories import make_model_row, make_set, make_study, work

pytestmark = pytest.mark.django_db

SANDBOX = "https://workersandbox.mturk.com"


def mturk_study(name: str = "turk", **options) -> Study:
    model = make_model_row()
    checks = make_set(4, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=900)
    study = make_study(
        [make_set(12, model=model)], n_assignments=3, size=5, attention=checks, name=name
    )
    study.provider = "mturk"
    study.provider_options = {"sandbox": True, **options}
    study.save(update_fields=["provider", "provider_options"])
    for i, hit_id in enumerate(["HIT1", "HIT2"]):
        Hit.objects.create(
            study=study,
            sandbox=True,
            index=i,
            request_token=f"tok-{name}-{i}",
            hit_id=f"{hit_id}-{name}",
            hit_type_id="TYPE",
            max_assignments=2,
            reward=Decimal("0.50"),
            lifetime_seconds=3600,
            duration_seconds=1800,
            auto_approve_seconds=3600,
        )
    return study


def params(study: Study, hit: int = 0, assignment: str = "A1", worker: str = "W1") -> dict:
    return {
        "assignmentId": assignment,
        "hitId": study.hits.get(index=hit).hit_id,
        "workerId": worker,
        "turkSubmitTo": SANDBOX,
    }


def accept(client, study: Study, **kwargs):
    data = {**params(study, **kwargs), "consent": "yes"}
    return client.post(reverse("annotate:study-start", args=[study.key]), data)


def entry(client, study: Study, query: dict):
    return client.get(reverse("annotate:study-entry", args=[study.key]), query)


def token_of(response) -> str:
    match = re.fullmatch(r"/w/([^/]+)/", response["Location"])
    assert match, response["Location"]
    return match.group(1)


def test_preview_shows_instructions_and_an_example_and_leases_nothing(client):
    study = mturk_study()
    query = {"assignmentId": handshake.PREVIEW, "hitId": study.hits.first().hit_id}
    response = entry(client, study, query)
    assert response.status_code == 200
    page = response.content.decode()
    assert "This is a preview" in page and 'name="consent"' not in page
    assert "data:image/png;base64," in page  # the example digit, inline
    csp = response["Content-Security-Policy"]
    for site in handshake.FRAME_ANCESTORS:
        assert site in csp.split("form-action")[0]
    assert "X-Frame-Options" not in response
    refused = client.post(
        reverse("annotate:study-start", args=[study.key]), {**query, "consent": "yes"}
    )
    assert refused.status_code == 400
    assert not Lease.objects.exists() and not HitAssignment.objects.exists()
    assert not Worker.objects.exists()


def test_accept_leases_one_assignment_and_reload_or_reaccept_give_it_back(client):
    study = mturk_study()
    first = accept(client, study)
    assert first.status_code == 302
    lease = Lease.objects.get()
    assert lease.provider_ref == "A1" and lease.worker.source == "mturk"
    row = HitAssignment.objects.get()
    assert (row.assignment_id, row.worker_id, row.lease_id) == ("A1", "W1", lease.pk)
    assert row.turk_submit_to == SANDBOX and row.hit.hit_id == "HIT1-turk"
    # Reloading MTurk's frame (a GET with the same ids) goes straight back to the grid.
    again = entry(client, study, params(study))
    assert again.status_code == 302 and token_of(again) == token_of(first)
    assert token_of(accept(client, study)) == token_of(first)
    # Another assignment id with the same worker id is another client: a worker id is not a
    # secret, so it never reaches the lease (MTurk gives a re-accept the same assignment id).
    other = accept(client, study, assignment="A1-forged")
    assert other.status_code == 409 and token_of(first) not in other.content.decode()
    assert "started this task" in other.content.decode()
    assert Lease.objects.count() == 1
    lease.refresh_from_db()
    assert lease.provider_ref == "A1"
    assert HitAssignment.objects.filter(lease=lease).count() == 1


def test_a_second_hit_of_the_study_is_refused(client):
    study = mturk_study()
    accept(client, study, hit=0, assignment="A1")
    response = accept(client, study, hit=1, assignment="B1")
    assert response.status_code == 409
    assert "another task of this study" in response.content.decode()
    assert Lease.objects.count() == 1 and HitAssignment.objects.count() == 1
    other = accept(client, study, hit=1, assignment="B2", worker="W2")  # someone else: fine
    assert other.status_code == 302 and Lease.objects.count() == 2


def test_unknown_hit_and_missing_ids_lease_nothing(client):
    study = mturk_study()
    data = {**params(study), "hitId": "NOT-OURS", "consent": "yes"}
    response = client.post(reverse("annotate:study-start", args=[study.key]), data)
    assert response.status_code == 404 and "does not belong" in response.content.decode()
    bare = client.post(reverse("annotate:study-start", args=[study.key]), {"consent": "yes"})
    assert bare.status_code == 400 and "accept the task" in bare.content.decode()
    api = client.post(
        reverse("annotate:api-lease", args=[study.key]),
        {"worker_id": "W9"},
        content_type="application/json",
    )
    assert api.status_code == 400  # the worker API cannot bypass the handshake
    assert not Lease.objects.exists()


def test_previous_participants_are_refused_when_the_study_says_so(client, settings):
    earlier = make_study(name="earlier", n_assignments=1)
    work(earlier, "W1")  # W1 submitted work in another study
    study = mturk_study(exclude_previous_workers=False)
    assert accept(client, study).status_code == 302
    strict = mturk_study(name="strict", exclude_previous_workers=True)
    settings.MTURK_ENDPOINT_URL = "http://127.0.0.1:9"  # never reached: refused before
    response = accept(client, strict, assignment="S1", worker="W1")
    assert response.status_code == 409 and "earlier study" in response.content.decode()
    assert not Lease.objects.filter(study=strict).exists()
    assert accept(client, strict, assignment="S2", worker="W2").status_code == 302  # a newcomer


def test_submit_then_externalsubmit_form_posts_back_to_mturk(client):
    study = mturk_study()
    token = token_of(accept(client, study))
    items = client.get(reverse("annotate:api-work", args=[token])).json()["items"]
    answers = [{"item": i["key"], "label": "4", "ms": 600} for i in items]
    done = client.post(
        reverse("annotate:api-submit", args=[token]),
        {"answers": answers},
        content_type="application/json",
    )
    assert done.status_code == 200
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.SUBMITTED and lease.answers.count() == 5
    page = client.get(reverse("annotate:work-done", args=[token]))
    html = page.content.decode()
    assert f'action="{SANDBOX}/mturk/externalSubmit"' in html
    assert 'name="assignmentId" value="A1"' in html
    assert lease.completion_code in html  # also shown as the fallback
    assert f"form-action 'self' {SANDBOX}" in page["Content-Security-Policy"]


def test_a_forged_submit_host_falls_back_to_mturk(client):
    study = mturk_study()
    data = {**params(study), "turkSubmitTo": "https://evil.example", "consent": "yes"}
    client.post(reverse("annotate:study-start", args=[study.key]), data)
    assert HitAssignment.objects.get().turk_submit_to == SANDBOX
    assert handshake.submit_host("https://www.mturk.com/", sandbox=True) == "https://www.mturk.com"
    assert (
        handshake.submit_host("https://www.mturk.com/x", sandbox=False) == "https://www.mturk.com"
    )
    assert handshake.submit_host("", sandbox=False) == "https://www.mturk.com"
    assert handshake.submit_host("javascript:alert(1)", sandbox=True) == SANDBOX


def test_a_local_trial_endpoint_may_take_the_submit(settings):
    local = "http://127.0.0.1:8765"
    assert handshake.submit_host(local, sandbox=True) == SANDBOX
    settings.MTURK_ENDPOINT_URL = local
    assert handshake.submit_host(local, sandbox=True) == local
    assert handshake.submit_host("http://127.0.0.1:9999", sandbox=True) == SANDBOX


def test_local_studies_get_no_mturk_form(client):
    study = make_study(n_assignments=1)
    lease = work(study, "panel-1")
    from annotate.work.tokens import lease_token

    html = client.get(reverse("annotate:work-done", args=[lease_token(lease)])).content.decode()
    assert "externalSubmit" not in html and "paste this code" in html


def test_a_full_study_says_so_in_the_preview_and_error_pages_stay_frameable(client):
    study = mturk_study()
    for n in range(3):  # three assignments, three workers
        response = accept(client, study, hit=n // 2, assignment=f"F{n}", worker=f"WF{n}")
        assert response.status_code == 302
    query = {"assignmentId": handshake.PREVIEW, "hitId": study.hits.first().hit_id}
    response = entry(client, study, query)
    assert response.status_code == 409 and "This study is full" in response.content.decode()
    assert "https://worker.mturk.com" in response["Content-Security-Policy"]
    study.status = Study.Status.CLOSED
    study.save(update_fields=["status"])
    closed = entry(client, study, query)
    assert closed.status_code == 410
    assert "https://worker.mturk.com" in closed["Content-Security-Policy"]
    assert Lease.objects.count() == 3


def test_the_preview_example_is_a_spare_attention_digit(client):
    study = mturk_study()
    used = set(
        Item.objects.filter(assignment__study=study, is_attention=True).values_list(
            "stimulus", flat=True
        )
    )
    html = entry(client, study, {"assignmentId": handshake.PREVIEW}).content.decode()
    shown = re.search(r'src="data:image/png;base64,([^"]+)"', html)[1]
    spare = [
        s for s in Stimulus.objects.filter(set__kind=StimulusSet.Kind.ATTENTION) if s.pk not in used
    ]
    assert spare, "the fixture's attention set has a digit no assignment uses"
    with spare[0].image.open("rb") as handle:
        assert base64.b64decode(shown) == canonical_png(handle.read())
