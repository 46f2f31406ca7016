"""The console's forms: generating stimuli as a job, creating a study, and who may use them."""

from __future__ import annotations

import os
import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotate.console.jobs import job_log, job_running, job_start
from annotate.errors import JobError
from annotate.models import StimulusSet, Study
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


def test_generate_form_runs_the_command_and_the_home_page_shows_the_set(
    client, staff, settings, tmp_path
):
    settings.BLINDSPOT_CONSOLE_JOBS = "inline"
    register(tmp_path)
    form = {
        "model": "tiny",
        "name": "tiny.web-v1",
        "split": "test",
        "limit": 6,
        "target": "closest",
        "confidence": "original",
        "controls": ["clean", "noise"],
        "seed": 0,
        "steps": 50,
    }
    response = client.post(reverse("console:stimuli-new"), form)
    assert response.status_code == 302 and response["Location"] == reverse("console:home")
    row = StimulusSet.objects.get(name="tiny.web-v1")
    assert row.status == StimulusSet.Status.DONE and row.stimuli.count() == 6
    assert row.params["steps"] == 50 and row.params["limit"] == 6
    assert {c.name for c in row.controls.all()} == {"tiny.web-v1-clean", "tiny.web-v1-noise"}
    home = client.get(reverse("console:home")).content.decode()
    assert "tiny.web-v1-noise" in home
    log = client.get(reverse("console:set-log", args=["tiny.web-v1"])).content.decode()
    assert "tiny.web-v1 (adversarial): 6 stimuli" in log
    live = client.get(reverse("console:progress")).json()["sets"]["tiny.web-v1"]
    assert (live["done"], live["total"], live["status"]) == (6, 6, "done")


def test_generate_form_shows_errors_and_starts_nothing(client, staff, settings, tmp_path):
    settings.BLINDSPOT_CONSOLE_JOBS = "inline"
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


def test_a_job_runs_detached_and_is_not_started_twice(settings, tmp_path):
    settings.BLINDSPOT_CONSOLE_JOBS = "process"
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "busy.pid").write_text(str(os.getpid()))  # a live process
    with pytest.raises(JobError, match="already running"):
        job_start("busy", ["help"])
    assert job_start("helper", ["help"]) == "process"  # manage.py help, then it exits
    deadline = time.monotonic() + 60
    while job_running("helper") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not job_running("helper")
    assert "generate_stimuli" in job_log("helper")  # help lists the commands
    with pytest.raises(JobError, match="letters"):
        job_start("../etc", ["help"])


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
