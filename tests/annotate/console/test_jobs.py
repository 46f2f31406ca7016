"""The console's jobs pages: staff only, live numbers in their JSON, cancel and retry buttons."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from robustness.registry.models import Job

pytestmark = pytest.mark.django_db

State = Job.State


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return user


def sent(app, queue: str = "gpu") -> list[int]:
    """Take every message off ``queue``: the job ids they carry, in order."""
    ids = []
    with app.connection_for_write() as conn, conn.SimpleQueue(queue) as q:
        while q.qsize():
            message = q.get(block=False)
            ids.append(message.payload[0][0])
            message.ack()
    return ids


def fan_out(states: list[str], *, label: str = "tiny-hc", progress=None) -> Job:
    """A stimuli parent with one stimulus_chunk child per state (started a minute ago)."""
    start = timezone.now() - dt.timedelta(minutes=1)
    parent = Job.objects.create(kind="stimuli", label=label, params={"chunks": len(states)})
    for i, state in enumerate(states):
        done, total = (progress or {}).get(i, (0, 0))
        Job.objects.create(
            kind="stimulus_chunk",
            label=f"{label} [{10 * i}, {10 * i + 10})",
            parent=parent,
            state=state,
            queue="gpu",
            progress_done=done,
            progress_total=total,
            host=f"gpu-{i}:4{i}" if state != State.QUEUED else "",
            device="cuda:0 (H200)" if state != State.QUEUED else "",
            attempts=0 if state == State.QUEUED else 1,
            started=None if state == State.QUEUED else start,
            finished=timezone.now() if state in Job.FINISHED else None,
            error="ValueError: boom" if state == State.FAILED else "",
            log=f"chunk {i} says hello",
        )
    return parent


def urls(job: Job) -> list[str]:
    return [
        reverse("console:jobs"),
        reverse("console:jobs-json"),
        reverse("console:job", args=[job.pk]),
        reverse("console:job-json", args=[job.pk]),
    ]


def test_jobs_pages_and_buttons_are_staff_only(client):
    job = fan_out([State.FAILED, State.RUNNING])
    actions = [reverse(f"console:job-{a}", args=[job.pk]) for a in ("cancel", "retry")]
    for url in [*urls(job), *actions]:
        response = client.post(url) if url in actions else client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url
    client.force_login(get_user_model().objects.create_user("someone", password="pw"))
    for url in [*urls(job), *actions]:
        response = client.post(url) if url in actions else client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url
    assert set(Job.objects.values_list("state", flat=True)) == {"queued", "failed", "running"}


def test_list_shows_top_level_jobs_newest_first_with_live_numbers(client, staff):
    old = fan_out([State.DONE, State.DONE], label="old-hc")
    new = fan_out([State.DONE, State.RUNNING, State.QUEUED], label="new-hc", progress={1: (5, 10)})
    html = client.get(reverse("console:jobs")).content.decode()
    assert html.index("new-hc") < html.index("old-hc")
    assert "new-hc [0, 10)" not in html  # children only on the job's page
    assert reverse("console:jobs-json") in html and 'data-period="2000"' in html
    rows = client.get(reverse("console:jobs-json")).json()["jobs"]
    assert set(rows) == {str(old.pk), str(new.pk)}
    row = rows[str(new.pk)]
    assert row["state"] == "running"  # a child started: the stored parent catches up later
    assert (row["done"], row["total"], row["pct"]) == (1, 3, 50.0)  # (1 + 0.5 + 0) / 3
    assert row["host"] == "gpu-0:40, gpu-1:41" and row["device"] == "cuda:0 (H200)"
    assert row["started"] and row["finished"] is None and row["duration"] >= 60
    assert row["url"] == reverse("console:job", args=[new.pk])


def test_list_and_its_json_take_the_same_few_queries_however_many_jobs(client, staff):
    def count(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx)

    fan_out([State.DONE])
    few = [count(reverse("console:jobs")), count(reverse("console:jobs-json"))]
    for _ in range(4):
        fan_out([State.DONE, State.RUNNING, State.QUEUED])
    assert [count(reverse("console:jobs")), count(reverse("console:jobs-json"))] == few


def test_detail_shows_each_chunk_and_its_json_moves_with_progress(client, staff):
    job = fan_out([State.FAILED, State.RUNNING], progress={1: (2, 10)})
    html = client.get(reverse("console:job", args=[job.pk])).content.decode()
    for text in ("tiny-hc [0, 10)", "tiny-hc [10, 20)", "ValueError: boom", "chunk 1 says hello"):
        assert text in html
    assert "gpu-1:41" in html and reverse("console:job-json", args=[job.pk]) in html
    assert reverse("console:job-cancel", args=[job.pk]) in html
    assert reverse("console:job-retry", args=[job.pk]) in html
    url = reverse("console:job-json", args=[job.pk])
    body = client.get(url).json()
    assert body["job"]["id"] == job.pk and body["job"]["state"] == "running"
    assert (body["job"]["done"], body["job"]["total"]) == (0, 2)
    child = job.children.get(state=State.RUNNING)
    assert body["children"][str(child.pk)]["pct"] == 20.0
    Job.objects.filter(pk=child.pk).update(progress_done=7)
    moved = client.get(url).json()["children"][str(child.pk)]
    assert (moved["done"], moved["total"], moved["pct"]) == (7, 10, 70.0)
    assert moved["attempts"] == 1 and moved["log"] == "chunk 1 says hello"
    assert client.get(url)["Cache-Control"] == "no-store"
    assert client.get(reverse("console:job-json", args=[job.pk + 99])).status_code == 404


def test_cancel_button_cancels_the_unfinished_jobs(client, staff):
    job = fan_out([State.DONE, State.RUNNING, State.QUEUED])
    response = client.post(reverse("console:job-cancel", args=[job.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("console:job", args=[job.pk])
    assert "3 unfinished job(s) cancelled" in response.content.decode()
    states = list(job.children.order_by("id").values_list("state", flat=True))
    assert states == [State.DONE, State.CANCELLED, State.CANCELLED]
    job.refresh_from_db()
    assert job.state == State.CANCELLED
    again = client.post(reverse("console:job-cancel", args=[job.pk]), follow=True)
    assert "nothing to cancel" in again.content.decode()
    assert client.get(reverse("console:job-cancel", args=[job.pk])).status_code == 405


def test_retry_button_sends_the_failed_chunks_again(client, staff, memory_broker):
    job = fan_out([State.DONE, State.FAILED, State.CANCELLED])
    failed = list(job.children.filter(state__in=[State.FAILED, State.CANCELLED]).order_by("id"))
    response = client.post(reverse("console:job-retry", args=[job.pk]), follow=True)
    assert f"job {job.pk} sent again" in response.content.decode()
    assert sorted(sent(memory_broker)) == [c.pk for c in failed]
    assert [c.state for c in job.children.order_by("id")] == [State.DONE, "queued", "queued"]
    assert all(c.task_id for c in job.children.filter(state=State.QUEUED))


def test_a_refused_retry_shows_its_message(client, staff, memory_broker):
    job = fan_out([State.RUNNING])
    child = job.children.get()
    response = client.post(reverse("console:job-retry", args=[child.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("console:job", args=[job.pk])
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [f"job {child.pk} is running: only failed or cancelled jobs"]
    assert sent(memory_broker) == []


def test_retry_with_the_broker_down_says_so_and_changes_nothing(client, staff, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    job = fan_out([State.FAILED])
    response = client.post(reverse("console:job-retry", args=[job.pk]), follow=True)
    assert response.status_code == 200
    assert "redis://127.0.0.1:1/0 is unreachable" in response.content.decode()
    assert job.children.get().state == State.FAILED


def test_the_buttons_need_the_csrf_token(staff):
    job = fan_out([State.RUNNING])
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    assert strict.post(reverse("console:job-cancel", args=[job.pk])).status_code == 403
    assert job.children.get().state == State.RUNNING


def test_home_links_the_jobs_page(client, staff):
    fan_out([State.RUNNING])
    html = client.get(reverse("console:home")).content.decode()
    assert reverse("console:jobs") in html and "Jobs (1 active)" in html
