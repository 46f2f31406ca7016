"""Staff API jobs: staff only, filters and pages, children in the detail, cancel and retry with
refusals in the API's ``{error, detail}`` shape, and bounded queries."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from robustness.registry.models import Job

pytestmark = pytest.mark.django_db

State = Job.State


@pytest.fixture
def client() -> APIClient:
    c = APIClient()
    c.force_authenticate(get_user_model().objects.create_user("boss", password="pw", is_staff=True))
    return c


@pytest.fixture
def memory_broker(settings):
    """The real Celery app on kombu's in-memory transport (no worker: messages wait there)."""
    from config.celery import app

    settings.CELERY_BROKER_URL = "memory://"
    app.close()  # a pooled connection to an earlier test's broker must not be reused
    yield app
    sent(app)
    app.close()


def sent(app, queue: str = "gpu") -> list[int]:
    """Take every message off ``queue``: the job ids they carry."""
    ids = []
    with app.connection_for_write() as conn, conn.SimpleQueue(queue) as q:
        while q.qsize():
            message = q.get(block=False)
            ids.append(message.payload[0][0])
            message.ack()
    return sorted(ids)


def fan_out(states: list[str], label: str = "tiny-hc") -> Job:
    parent = Job.objects.create(kind="stimuli", label=label, params={"chunks": len(states)})
    for i, state in enumerate(states):
        Job.objects.create(
            kind="stimulus_chunk",
            label=f"{label} [{i}, {i + 1})",
            parent=parent,
            state=state,
            queue="gpu",
            progress_done=i,
            progress_total=10,
            host=f"gpu-{i}:1",
            attempts=1,
            error="ValueError: boom" if state == State.FAILED else "",
            log="tail of the log",
        )
    return parent


def test_jobs_endpoints_refuse_anonymous_and_non_staff_users():
    job = fan_out([State.FAILED])
    member = APIClient()
    member.force_authenticate(get_user_model().objects.create_user("member", password="pw"))
    for who, status in ((APIClient(), 401), (member, 403)):
        assert who.get(reverse("staff-api:job-list")).status_code == status
        assert who.get(reverse("staff-api:job-detail", args=[job.pk])).status_code == status
        for action in ("cancel", "retry"):
            response = who.post(reverse(f"staff-api:job-{action}", args=[job.pk]))
            assert response.status_code == status and b"tiny-hc" not in response.content
    assert job.children.get().state == State.FAILED


def test_list_is_newest_first_filtered_by_state_and_kind_and_paginated(client):
    old = fan_out([State.DONE], label="old")
    new = fan_out([State.FAILED, State.RUNNING], label="new")
    url = reverse("staff-api:job-list")
    body = client.get(url).json()
    assert body["count"] == 5 and body["results"][0]["id"] > body["results"][-1]["id"]
    parents = client.get(url, {"kind": "stimuli"}).json()["results"]
    assert [(j["id"], j["children_count"], j["parent"]) for j in parents] == [
        (new.pk, 2, None),
        (old.pk, 1, None),
    ]
    failed = client.get(url, {"state": "failed"}).json()["results"]
    assert [(j["label"], j["error"], j["parent"]) for j in failed] == [
        ("new [0, 1)", "ValueError: boom", new.pk)
    ]
    both = client.get(url, {"state": "running", "kind": "stimulus_chunk"}).json()
    assert [j["host"] for j in both["results"]] == ["gpu-1:1"]
    page = client.get(url, {"page_size": 2}).json()
    assert len(page["results"]) == 2 and page["next"]
    bad = client.get(url, {"state": "asleep"})
    assert bad.status_code == 400 and "state" in bad.json()


def test_detail_has_params_log_and_each_childs_summary(client):
    job = fan_out([State.DONE, State.FAILED])
    body = client.get(reverse("staff-api:job-detail", args=[job.pk])).json()
    assert body["kind"] == "stimuli" and body["params"] == {"chunks": 2}
    assert body["children_count"] == 2
    children = body["children"]
    assert [c["state"] for c in children] == ["done", "failed"]
    assert children[1]["error"] == "ValueError: boom" and children[1]["attempts"] == 1
    assert (children[1]["progress_done"], children[1]["progress_total"]) == (1, 10)
    missing = client.get(reverse("staff-api:job-detail", args=[job.pk + 99]))
    assert missing.status_code == 404


def test_cancel_cancels_the_unfinished_and_leaves_a_finished_job_alone(client):
    job = fan_out([State.DONE, State.RUNNING, State.QUEUED])
    url = reverse("staff-api:job-cancel", args=[job.pk])
    body = client.post(url).json()
    assert body["state"] == "cancelled"
    assert [c["state"] for c in body["children"]] == ["done", "cancelled", "cancelled"]
    finished = Job.objects.get(pk=job.pk).finished
    again = client.post(url)
    assert again.status_code == 200 and Job.objects.get(pk=job.pk).finished == finished
    assert client.get(url).status_code == 405


def test_retry_sends_the_failed_children_again(client, memory_broker):
    job = fan_out([State.DONE, State.FAILED, State.CANCELLED])
    retried = list(job.children.exclude(state=State.DONE).values_list("pk", flat=True))
    body = client.post(reverse("staff-api:job-retry", args=[job.pk])).json()
    assert body["state"] == "queued"
    assert [c["state"] for c in body["children"]] == ["done", "queued", "queued"]
    assert sent(memory_broker) == sorted(retried)


def test_a_refused_retry_is_an_error_body(client, memory_broker):
    job = fan_out([State.RUNNING]).children.get()
    response = client.post(reverse("staff-api:job-retry", args=[job.pk]))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert response.json()["detail"] == f"job {job.pk} is running: only failed or cancelled jobs"
    assert sent(memory_broker) == []


def test_retry_with_the_broker_down_is_a_503_and_changes_nothing(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    job = fan_out([State.FAILED])
    response = client.post(reverse("staff-api:job-retry", args=[job.pk]))
    assert response.status_code == 503 and response.json()["error"] == "queue_unavailable"
    assert "redis://127.0.0.1:1/0 is unreachable" in response.json()["detail"]
    assert job.children.get().state == State.FAILED


def test_job_list_queries_do_not_grow_with_rows(client):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("staff-api:job-list")).status_code == 200
        return len(ctx)

    fan_out([State.DONE])
    few = count()
    for _ in range(3):
        fan_out([State.DONE, State.FAILED])
    assert count() == few
