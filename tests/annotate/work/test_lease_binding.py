"""A lease belongs to the client that took it (findings 1 and 4 of the hostile-worker review).

A participant's panel id (``worker_id``, ``PROLIFIC_PID``) is an identifier, not a secret:
knowing it must never yield that participant's lease token, saved answers or submit.
"""

from __future__ import annotations

import json
import re
import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from annotate import errors
from annotate.models import Lease, Study
from annotate.work.answers import answers_save
from annotate.work.leases import lease_acquire
from annotate.work.tokens import lease_token
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


def api_lease(client: Client, study: Study, **body: str):
    return client.post(
        reverse("annotate:api-lease", args=[study.key]), json.dumps(body), "application/json"
    )


def test_a_known_panel_id_gets_no_token_answers_or_submit_through_the_api(client):
    study = make_study(n_assignments=3)
    mine = api_lease(client, study, worker_id="5f0c0ffee01", attempt="her-browser")
    assert mine.status_code == 201
    token = mine.json()["token"]
    lease = Lease.objects.get()
    answers_save(lease=lease, answers=[{"item": lease.assignment.items.first().key, "label": "7"}])

    for stranger in ({}, {"attempt": "guessed"}, {"attempt": ""}):
        refused = api_lease(client, study, worker_id="5f0c0ffee01", **stranger)
        assert refused.status_code == 409, refused.content
        assert refused.json()["error"] == "lease_elsewhere"
        assert token not in refused.content.decode() and "7" not in refused.json()["detail"]
    assert Lease.objects.count() == 1  # nothing taken either
    same = api_lease(client, study, worker_id="5f0c0ffee01", attempt="her-browser")
    assert same.status_code == 201 and same.json()["token"] == token


def test_the_entry_form_with_a_known_id_says_how_to_continue_and_leaks_nothing(client):
    study = make_study(n_assignments=3)
    entry = reverse("annotate:study-entry", args=[study.key])
    page = client.get(entry, {"PROLIFIC_PID": "p-42"}).content.decode()
    nonce = re.search(r'name="attempt" value="([^"]+)"', page)[1]
    start = reverse("annotate:study-start", args=[study.key])
    mine = client.post(start, {"worker_id": "p-42", "attempt": nonce, "consent": "yes"})
    assert mine.status_code == 302
    token = lease_token(Lease.objects.get())

    # Someone else with the same id: a fresh entry page (another nonce), or a forged one.
    again = client.get(entry, {"PROLIFIC_PID": "p-42"})
    assert again.status_code == 200 and token not in again.content.decode()
    other = re.search(r'name="attempt" value="([^"]+)"', again.content.decode())[1]
    assert other != nonce
    for attempt in (other, "", "x" * 22):
        refused = client.post(start, {"worker_id": "p-42", "attempt": attempt, "consent": "yes"})
        html = refused.content.decode()
        assert refused.status_code == 409 and token not in html
        assert "You have started this task already" in html and "UTC" in html
    # The browser that holds the nonce goes back to its own lease.
    back = client.post(start, {"worker_id": "p-42", "attempt": nonce, "consent": "yes"})
    assert back.status_code == 302 and token in back["Location"]


def test_services_resume_only_with_the_same_attempt():
    study = make_study(n_assignments=2)
    lease = lease_acquire(study=study, worker_id="w", attempt="tab-1")
    assert lease_acquire(study=study, worker_id="w", attempt="tab-1") == lease
    with pytest.raises(errors.LeaseHeldElsewhere):
        lease_acquire(study=study, worker_id="w")
    with pytest.raises(errors.LeaseHeldElsewhere):
        lease_acquire(study=study, worker_id="w", attempt="tab-2")
    with pytest.raises(errors.InvalidSubmission):
        lease_acquire(study=study, worker_id="w2", attempt="bad\x00attempt")


@pytest.mark.django_db(transaction=True)
def test_a_dozen_simultaneous_starts_of_one_client_all_get_its_one_lease():
    """Finding 4: racing requests of one worker once drew 409 already_participated."""
    study = make_study(n_assignments=20)
    results: list[str] = []
    barrier = threading.Barrier(12)

    def start() -> None:
        try:
            barrier.wait()
            lease = lease_acquire(study=study, worker_id="racer", attempt="one-page")
            results.append(lease.key)
        except errors.WorkError as exc:
            results.append(f"refused: {exc.code}")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and len(set(results)) == 1, results
    assert not results[0].startswith("refused")
    assert Lease.objects.filter(study=study).count() == 1
