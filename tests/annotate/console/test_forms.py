"""The console's forms: queueing a stimulus set as jobs, creating a study, who may use them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotate.models import StimulusSet, Study
from robustness.registry.models import Job
from tests.annotate.factories import make_model_row, make_set
from tests.annotate.factories import register_tiny_model as register

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_thread")]


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return user


FORMS = ("console:stimuli-new", "console:study-new")


@pytest.mark.parametrize("name", FORMS)
def test_forms_refuse_anonymous_and_non_staff(client, name):
    url = reverse(name)
    for response in (client.get(url), client.post(url, {"name": "x"})):
        assert response.status_code == 302 and "/login/" in response["Location"]
    user = get_user_model().objects.create_user("worker", password="pw")
    client.force_login(user)
    assert client.post(url, {"name": "x"}).status_code == 302
    assert not Study.objects.exists() and not StimulusSet.objects.exists()


GENERATE = {
    "model": "tiny",
    "name": "tiny.web-v1",
    "split": "test",
    "target": "closest",
    "confidence": "original",
    "controls": ["clean", "noise"],
    "seed": 0,
    "steps": 50,
}


@pytest.fixture
def memory_broker(settings):
    """The real Celery app on kombu's in-memory transport (no worker: messages wait there)."""
    from config.celery import app

    settings.CELERY_BROKER_URL = "memory://"
    app.close()  # a pooled connection to an earlier test's broker must not be reused
    yield app
    drain(app)
    app.close()


def drain(app, queue: str = "gpu") -> list[tuple[str, list]]:
    """Take every message off ``queue``: (task name, args) in order."""
    out = []
    with app.connection_for_write() as conn, conn.SimpleQueue(queue) as q:
        while q.qsize():
            message = q.get(block=False)
            out.append((message.headers["task"], message.payload[0]))
            message.ack()
    return out


def test_generate_form_queues_the_set_as_a_parent_and_its_chunks(
    client, staff, tmp_path, memory_broker
):
    register(tmp_path)
    response = client.post(reverse("console:stimuli-new"), GENERATE)
    parent = Job.objects.get(parent__isnull=True)
    assert response.status_code == 302
    assert response["Location"] == reverse("console:job", args=[parent.pk])
    assert (parent.kind, parent.label, parent.state) == ("stimuli", "tiny.web-v1", "queued")
    chunks = list(parent.children.order_by("id"))
    assert [c.params["span"] for c in chunks] == [[0, 64], [64, 128]]  # 128 synthetic images
    assert {c.kind for c in chunks} == {"stimulus_chunk"}
    request = chunks[0].params["request"]
    assert request["name"] == "tiny.web-v1" and request["controls"] == ["clean", "noise"]
    assert request["steps"] == 50 and request["replace"] is False
    assert all(c.task_id and c.queue == "gpu" for c in chunks)
    sent = drain(memory_broker)
    assert sent == [("blindspot.stimulus_chunk", [c.pk]) for c in chunks]
    assert not StimulusSet.objects.exists()  # the workers make it
    page = client.get(response["Location"]).content.decode()
    assert "tiny.web-v1 [0, 64)" in page and "2 chunk(s) of 128 images queued" in page


def test_generate_form_makes_fewer_chunks_for_a_small_set(client, staff, tmp_path, memory_broker):
    register(tmp_path)
    client.post(reverse("console:stimuli-new"), {**GENERATE, "limit": 6})
    parent = Job.objects.get(parent__isnull=True)
    assert [c.params["span"] for c in parent.children.all()] == [[0, 6]]
    assert parent.params["images"] == 6 and parent.progress_total == 1


def test_generate_form_with_the_broker_down_says_so_and_queues_nothing(
    client, staff, settings, tmp_path
):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    register(tmp_path)
    response = client.post(reverse("console:stimuli-new"), GENERATE, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and "the job queue at redis://127.0.0.1:1/0 is unreachable" in shown[0]
    assert "Traceback" not in response.content.decode()
    assert response.context["form"].data["name"] == "tiny.web-v1"  # kept for another try
    assert not Job.objects.exists() and not StimulusSet.objects.exists()


def test_generate_form_shows_errors_and_starts_nothing(client, staff, tmp_path, memory_broker):
    register(tmp_path)
    url = reverse("console:stimuli-new")
    base = {"model": "tiny", "split": "test", "target": "closest", "seed": 0, "steps": 50}
    bad = [
        ({**base, "confidence": "1.5"}, "confidence"),
        ({**base, "confidence": "original", "model": "nope"}, "model"),
        ({**base, "confidence": "original", "limit": 0}, "limit"),
        ({**base, "confidence": "original", "name": "bad name!"}, "name"),
    ]
    for data, field in bad:
        response = client.post(url, data)
        assert response.status_code == 200, field
        form = response.context["form"]
        assert form.errors and (field in form.errors or "__all__" in form.errors), field
    assert not StimulusSet.objects.exists()
    make_set(3, name="taken", model=make_model_row(name="other"))
    response = client.post(url, {**base, "confidence": "original", "name": "taken"})
    assert "choose another name" in str(response.context["form"].errors)
    assert response.status_code == 200 and "exists with other parameters" in str(
        response.context["form"].errors
    )
    assert StimulusSet.objects.get(name="taken").stimuli.count() == 3
    assert not Job.objects.exists() and drain(memory_broker) == []


def test_create_study_form_makes_a_draft_and_shows_service_errors(client, staff):
    model = make_model_row(name="m")
    make_set(12, name="adv", model=model)
    make_set(6, name="checks", model=model, kind=StimulusSet.Kind.ATTENTION, first_source=100)
    url = reverse("console:study-new")
    form = {
        "name": "web-study",
        "sets": ["adv"],
        "design": "partition",
        "size": 5,
        "attention_checks": 1,
        "raters": 1,
        "per_worker": 1,
        "lease_minutes": 30,
        "attention_set": "checks",
        "seed": 0,
    }
    response = client.post(url, {**form, "size": 1})
    assert response.status_code == 200 and "size" in response.context["form"].errors
    response = client.post(url, {**form, "sets": ["checks"]})
    assert response.status_code == 200 and "sets" in response.context["form"].errors
    assert not Study.objects.exists()
    response = client.post(url, form)
    assert response.status_code == 302
    assert response["Location"] == reverse("console:study", args=["web-study"])
    study = Study.objects.get(name="web-study")
    assert study.status == Study.Status.DRAFT and study.assignment_size == 5
    assert study.assignments.count() == study.config["plan"]["assignments"] > 0
    again = client.post(url, form)
    assert again.status_code == 200 and "exists already" in str(again.context["form"].errors)
    reserved = client.post(url, {**form, "name": "new"})
    assert "reserved" in str(reserved.context["form"].errors)
