"""Nothing created twice, nothing paid twice — at any delay.

At every step that creates or spends (create the study, publish it, approve, add places, set up
a bonus, pay it) the run is cut between "intent written" and "call answered", both before the
request reaches Prolific and after Prolific acted with the answer lost; the command is rerun
after one hour and after 25 hours of simulated time (time_machine moves our clock and the local
Prolific's together). A few cuts are real: the command runs in its own process and is killed
with SIGKILL while Prolific holds the request.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.models import Lease
from annotate.prolific.models import ProlificBonus, ProlificStudy
from annotate.work.answers import lease_submit
from tests.annotate.factories import make_model_row, make_set, make_study
from tests.queue.harness import database_url

ROOT = Path(__file__).resolve().parents[3]
DELAYS = {"1 hour": dt.timedelta(hours=1), "25 hours": dt.timedelta(hours=25)}
CUTS = ["before Prolific", "after Prolific acted"]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("prolific", *args, stdout=out)
    return out.getvalue()


def cut(fake, pattern: str, how: str) -> None:
    if how == "before Prolific":
        fake.fail(pattern, status=500)
    else:
        fake.drop_after(pattern)


def later(delta: dt.timedelta):
    return time_machine.travel(dt.datetime.now(dt.UTC) + delta, tick=True)


def study_with_work(fake, client, name: str, participants: int = 1):
    """A published study with ``participants`` completed, synced submissions."""
    make_study([make_set(12, model=make_model_row())], n_assignments=3, size=5, name=name)
    run("publish", "--study", name, "--reward", "1.20", "--yes")
    remote = ProlificStudy.objects.get(study__name=name)
    for i in range(participants):
        start = requests.get(
            f"{fake.url}/studies/{remote.prolific_id}/start",
            params={"PROLIFIC_PID": f"P{i}"},
            allow_redirects=False,
            timeout=5,
        )
        target = urlsplit(start.headers["Location"])
        params = {k: v[0] for k, v in parse_qs(target.query).items()}
        client.post(
            reverse("annotate:study-start", args=[remote.study.key]), {**params, "consent": "yes"}
        )
        lease = Lease.objects.get(provider_ref=params["SESSION_ID"])
        items = lease.assignment.items.order_by("position")
        lease_submit(lease=lease, answers=[{"item": it.key, "label": "1"} for it in items])
        requests.get(
            f"{fake.url}/submissions/complete",
            params={"cc": remote.completion_code, "session": params["SESSION_ID"]},
            timeout=5,
        )
    run("sync", "--study", name)
    return remote


@pytest.mark.django_db
@pytest.mark.parametrize("delay", DELAYS, ids=list(DELAYS))
@pytest.mark.parametrize("how", CUTS)
@pytest.mark.parametrize(
    "step, pattern",
    [("create", r"^POST /api/v1/studies/?$"), ("publish", r"^POST /api/v1/studies/.*/transition")],
)
def test_publish_creates_exactly_one_study(fake, step, pattern, how, delay):
    make_study([make_set(12, model=make_model_row())], n_assignments=3, size=5, name="c")
    cut(fake, pattern, how)
    with pytest.raises(CommandError):
        run("publish", "--study", "c", "--reward", "1.20", "--yes")
    with later(DELAYS[delay]):
        run("publish", "--study", "c", "--reward", "1.20", "--yes")
    assert len(fake.studies) == 1
    (remote,) = fake.studies.values()
    assert remote["status"] == "ACTIVE"
    row = ProlificStudy.objects.get()
    assert row.prolific_id == remote["id"] and row.state == ProlificStudy.State.PUBLISHED
    # After Prolific acted, the rerun found the study by its internal name and sent no create.
    creates = 1 if how == "after Prolific acted" or step == "publish" else 2
    assert fake.count(r"^POST /api/v1/studies/?$") == creates


@pytest.mark.django_db
@pytest.mark.parametrize("delay", DELAYS, ids=list(DELAYS))
@pytest.mark.parametrize("how", CUTS)
def test_approve_is_carried_out_once(fake, client, how, delay):
    study_with_work(fake, client, "a", participants=2)
    cut(fake, r"bulk-approve", how)
    with pytest.raises(CommandError):
        run("approve", "--study", "a", "--yes")
    with later(DELAYS[delay]):
        out = run("approve", "--study", "a", "--yes")
    assert "approve: 2 done, 0 failed" in out
    assert {s["status"] for s in fake.submissions.values()} == {"APPROVED"}


@pytest.mark.django_db
@pytest.mark.parametrize("delay", DELAYS, ids=list(DELAYS))
@pytest.mark.parametrize("how", CUTS)
def test_add_places_adds_them_once(fake, client, how, delay):
    remote = study_with_work(fake, client, "p")
    before = fake.studies[remote.prolific_id]["total_available_places"]
    cut(fake, r"^PATCH /api/v1/studies/", how)
    with pytest.raises(CommandError):
        run("add-places", "--study", "p", "--places", "2", "--yes")
    with later(DELAYS[delay]):
        run("add-places", "--study", "p", "--places", "2", "--yes")
    assert fake.studies[remote.prolific_id]["total_available_places"] == before + 2


@pytest.mark.django_db
@pytest.mark.parametrize("delay", DELAYS, ids=list(DELAYS))
@pytest.mark.parametrize("how", CUTS)
@pytest.mark.parametrize("step, pattern", [("setup", r"bonus-payments/?$"), ("pay", r"/pay/?$")])
def test_a_bonus_is_paid_exactly_once(fake, client, step, pattern, how, delay):
    study_with_work(fake, client, "b", participants=2)
    run("approve", "--study", "b", "--yes")
    cut(fake, pattern, how)
    with pytest.raises(CommandError):
        run("bonus", "--study", "b", "--amount", "0.50", "--all-approved", "--yes")
    lost_pay = step == "pay" and how == "before Prolific"
    with later(DELAYS[delay]):
        out = run("sync", "--study", "b")  # resumes unfinished bonuses
        if lost_pay and delay == "1 hour":
            # the request never arrived, but nothing can tell that from a lost answer yet
            assert "not paid again before" in out
            assert fake.payments == []
            with later(dt.timedelta(hours=24)):
                run("sync", "--study", "b")
        run("bonus", "--study", "b", "--amount", "0.50", "--all-approved", "--yes")
    assert len(fake.payments) == 1
    paid = sorted(cents for p in fake.payments for _, cents in p["rows"])
    assert paid == [50, 50]
    assert ProlificBonus.objects.filter(state__in=["paid", "confirmed"]).count() == 1


# --- real kills ---------------------------------------------------------------------------


def killed(fake, *args: str, pattern: str, before: bool) -> None:
    """Run ``manage.py prolific ARGS`` in its own process and SIGKILL it while Prolific holds
    the matching request (before acting on it, or after acting and before answering)."""
    handle = fake.hold(pattern, before=before)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PROLIFIC_API_URL": fake.url + "/api/v1/",
        "PROLIFIC_APP_URL": fake.url,
        "PROLIFIC_API_TOKEN": "test-token",
        "PUBLIC_BASE_URL": "http://testserver",
    }
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "prolific", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        arrived = handle.arrived.wait(120)
        assert arrived, proc.communicate(timeout=5)[0] if proc.poll() is not None else "no call"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        handle.release()
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("before", [True, False], ids=["before acting", "after acting"])
def test_killed_while_paying_pays_once(fake, client, before):
    study_with_work(fake, client, "k", participants=1)
    run("approve", "--study", "k", "--yes")
    killed(
        fake,
        "bonus",
        "--study",
        "k",
        "--amount",
        "0.50",
        "--all-approved",
        "--yes",
        pattern=r"/pay/?$",
        before=before,
    )
    assert ProlificBonus.objects.get().state == ProlificBonus.State.PAYING
    for delay in (dt.timedelta(hours=1), dt.timedelta(hours=25)):
        with later(delay):
            run("sync", "--study", "k")
            run("bonus", "--study", "k", "--amount", "0.50", "--all-approved", "--yes")
    assert len(fake.payments) == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killed_while_creating_creates_one_study(fake):
    make_study([make_set(12, model=make_model_row())], n_assignments=3, size=5, name="kc")
    killed(
        fake,
        "publish",
        "--study",
        "kc",
        "--reward",
        "1.20",
        "--yes",
        pattern=r"^POST /api/v1/studies/?$",
        before=False,
    )
    assert ProlificStudy.objects.get().state == ProlificStudy.State.CREATING
    with later(dt.timedelta(hours=25)):
        run("publish", "--study", "kc", "--reward", "1.20", "--yes")
    assert len(fake.studies) == 1
    assert ProlificStudy.objects.get().state == ProlificStudy.State.PUBLISHED
