"""The Prolific participant handshake through Django's test client: arrive, consent, reload,
another browser with the same id, a forged session, decline, the completion link, the deadline,
and the returned submission freeing the assignment."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.models import Lease
from annotate.prolific.models import ProlificSubmission
from annotate.prolific.reconcile import apply_submission
from annotate.work.answers import answers_save, lease_submit
from tests.annotate.prolific.helpers import arrival, prolific_study

pytestmark = pytest.mark.django_db


def start(client, study, **kwargs):
    data = {**arrival(study, **kwargs), "consent": "yes"}
    return client.post(reverse("annotate:study-start", args=[study.key]), data)


def test_consent_binds_the_submission_to_a_lease_with_prolifics_deadline(client):
    study = prolific_study(max_minutes=20)
    before = timezone.now()
    response = start(client, study)
    assert response.status_code == 302 and "/w/" in response["Location"]
    row = ProlificSubmission.objects.get(submission_id="S1")
    assert row.participant_id == "P1" and row.lease is not None
    lease = row.lease
    assert lease.provider_ref == "S1" and lease.attempt == "S1"
    assert lease.deadline is not None
    assert lease.deadline <= before + dt.timedelta(minutes=20)
    assert lease.expires <= lease.deadline


def test_reload_with_the_same_session_resumes_and_the_entry_page_redirects(client):
    study = prolific_study()
    first = start(client, study)["Location"]
    assert start(client, study)["Location"] == first
    entry = client.get(reverse("annotate:study-entry", args=[study.key]), arrival(study))
    assert entry.status_code == 302 and entry["Location"] == first


def test_a_bare_participant_id_never_yields_the_lease(client):
    study = prolific_study()
    first = start(client, study)["Location"]
    other = start(client, study, session="S-FORGED")
    assert other.status_code == 409
    assert first.split("/w/")[1].strip("/") not in other.content.decode()


def test_a_session_of_another_participant_is_refused(client):
    study = prolific_study()
    start(client, study, pid="P1", session="S1")
    response = start(client, study, pid="P2", session="S1")
    assert response.status_code == 403
    assert ProlificSubmission.objects.get(submission_id="S1").participant_id == "P1"


def test_a_link_without_session_says_to_open_it_from_prolific(client):
    study = prolific_study()
    data = {"PROLIFIC_PID": "P1", "consent": "yes"}
    response = client.post(reverse("annotate:study-start", args=[study.key]), data)
    assert response.status_code == 400
    assert "open this study from Prolific" in response.content.decode()
    assert not Lease.objects.exists()


def test_a_study_id_that_is_not_ours_is_refused(client):
    study = prolific_study()
    data = {**arrival(study), "STUDY_ID": "SOMEONE-ELSES", "consent": "yes"}
    response = client.post(reverse("annotate:study-start", args=[study.key]), data)
    assert response.status_code == 404
    assert not Lease.objects.exists()


def test_the_entry_page_offers_the_no_consent_code(client):
    study = prolific_study()
    page = client.get(reverse("annotate:study-entry", args=[study.key]), arrival(study))
    html = page.content.decode()
    assert "submissions/complete?cc=NOPE5678" in html
    assert "DONE1234" not in html  # the completion code is for finished work only


def test_the_done_page_links_to_prolifics_completion_url(client):
    study = prolific_study()
    token = start(client, study)["Location"].split("/w/")[1].strip("/")
    lease = Lease.objects.get()
    items = list(lease.assignment.items.order_by("position"))
    lease_submit(lease=lease, answers=[{"item": i.key, "label": "3"} for i in items])
    page = client.get(reverse("annotate:work-done", args=[token]))
    html = page.content.decode()
    assert re.search(r"https://app\.prolific\.com/submissions/complete\?cc=DONE1234", html)


def test_autosaves_never_extend_the_lease_past_prolifics_deadline(client):
    study = prolific_study(max_minutes=20)
    start(client, study)
    lease = Lease.objects.get()
    item = lease.assignment.items.order_by("position").first()
    later = lease.deadline - dt.timedelta(seconds=5)
    answers_save(lease=lease, answers=[{"item": item.key, "label": "1"}], now=later)
    lease.refresh_from_db()
    assert lease.expires == lease.deadline


def test_a_returned_submission_frees_its_assignment_at_once(client):
    study = prolific_study()
    start(client, study)
    lease = Lease.objects.get()
    remote = study.prolific_studies.get()
    apply_submission(remote, {"id": "S1", "participant_id": "P1", "status": "RETURNED"})
    lease.refresh_from_db()
    assert lease.status == Lease.Status.EXPIRED
    # someone else can take that assignment now
    assert start(client, study, pid="P2", session="S2").status_code == 302
    assert Lease.objects.filter(status=Lease.Status.ACTIVE).count() == 1


def test_a_known_start_time_tightens_the_deadline(client):
    study = prolific_study(max_minutes=20)
    start(client, study)
    lease = Lease.objects.get()
    remote = study.prolific_studies.get()
    started = timezone.now() - dt.timedelta(minutes=10)
    apply_submission(
        remote,
        {"id": "S1", "participant_id": "P1", "status": "ACTIVE", "started_at": started.isoformat()},
    )
    lease.refresh_from_db()
    assert lease.deadline <= started + dt.timedelta(minutes=20)
    assert lease.expires <= lease.deadline


def test_a_submitted_lease_is_never_released_by_a_late_return(client):
    study = prolific_study()
    start(client, study)
    lease = Lease.objects.get()
    items = list(lease.assignment.items.order_by("position"))
    lease_submit(lease=lease, answers=[{"item": i.key, "label": "3"} for i in items])
    apply_submission(
        study.prolific_studies.get(), {"id": "S1", "participant_id": "P1", "status": "RETURNED"}
    )
    lease.refresh_from_db()
    assert lease.status == Lease.Status.SUBMITTED
