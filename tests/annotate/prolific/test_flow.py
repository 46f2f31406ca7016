"""The whole requester flow through the real HTTP client and the commands, against the local
Prolific: publish → a participant arrives with the three parameters → consents → labels →
completes → sync → approve → bonus; a returned submission frees its assignment; the paging,
pause/stop/add-places and message actions; bad input ends in one line."""

from __future__ import annotations

import io
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.models import Lease
from annotate.prolific.models import ProlificBonus, ProlificStudy, ProlificSubmission
from annotate.work.answers import lease_submit
from tests.annotate.factories import make_model_row, make_set, make_study

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("prolific", *args, stdout=out)
    return out.getvalue()


def new_study(name: str = "pilot", n: int = 3):
    return make_study([make_set(12, model=make_model_row())], n_assignments=n, size=5, name=name)


def published(fake, name: str = "pilot", n: int = 3, *extra: str):
    study = new_study(name, n)
    out = run("publish", "--study", name, "--reward", "1.20", "--yes", *extra)
    remote = ProlificStudy.objects.get(study=study)
    return study, remote, out


def participate(fake, client, remote, pid: str, *, finish: bool = True):
    """A participant starts on Prolific, lands on our page, consents, labels, completes."""
    started = requests.get(
        f"{fake.url}/studies/{remote.prolific_id}/start",
        params={"PROLIFIC_PID": pid},
        allow_redirects=False,
        timeout=5,
    )
    assert started.status_code == 302
    target = urlsplit(started.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert set(params) == {"PROLIFIC_PID", "STUDY_ID", "SESSION_ID"}
    entry = client.get(target.path, params)
    assert entry.status_code == 200
    response = client.post(
        reverse("annotate:study-start", args=[remote.study.key]), {**params, "consent": "yes"}
    )
    assert response.status_code == 302
    lease = Lease.objects.get(provider_ref=params["SESSION_ID"])
    if finish:
        items = lease.assignment.items.order_by("position")
        lease_submit(lease=lease, answers=[{"item": i.key, "label": "7"} for i in items])
        done = client.get(response["Location"] + "done")
        cc = re.search(r"submissions/complete\?cc=(\w+)", done.content.decode()).group(1)
        back = requests.get(
            f"{fake.url}/submissions/complete",
            params={"cc": cc, "session": params["SESSION_ID"]},
            timeout=5,
        )
        assert back.status_code == 200
    return params["SESSION_ID"], lease


def test_publish_creates_one_study_with_the_url_codes_and_places(fake):
    study, remote, out = published(fake, "pilot", 3, "--filter", "approval_rate>=95")
    assert "Mode: LOCAL" in out and "/hour" in out and "Cost:" in out
    assert [s["internal_name"] for s in fake.studies.values()] == [remote.internal_name]
    sent = fake.studies[remote.prolific_id]
    assert sent["status"] == "ACTIVE"
    assert sent["total_available_places"] == 3 and sent["reward"] == 120
    url = sent["external_study_url"]
    assert "{{%PROLIFIC_PID%}}" in url and "{{%SESSION_ID%}}" in url and study.key in url
    codes = {c["code_type"]: c["code"] for c in sent["completion_codes"]}
    assert codes == {"COMPLETED": remote.completion_code, "NO_CONSENT": remote.returned_code}
    with pytest.raises(CommandError, match="already on Prolific"):
        run("publish", "--study", "pilot", "--reward", "1.20", "--yes")
    assert len(fake.studies) == 1


def test_participant_flow_sync_approve_bonus(fake, client):
    study, remote, _ = published(fake)
    session, lease = participate(fake, client, remote, "P1")
    out = run("sync", "--study", "pilot")
    assert "AWAITING REVIEW 1" in out and "no disagreements" in out
    row = ProlificSubmission.objects.get(submission_id=session)
    assert row.lease == lease and row.status == "AWAITING REVIEW"
    out = run("approve", "--study", "pilot", "--yes")
    assert "approve: 1 done, 0 failed" in out
    assert fake.submissions[session]["status"] == "APPROVED"
    out = run("bonus", "--study", "pilot", "--amount", "0.50", "--all-approved", "--yes")
    assert "bonus: 1 done" in out
    assert len(fake.payments) == 1
    # a second bonus run pays nothing more
    out = run("bonus", "--study", "pilot", "--amount", "0.50", "--all-approved", "--yes")
    assert "Nothing to bonus" in out and len(fake.payments) == 1
    assert "spent" in run("status", "--study", "pilot")


def test_a_returned_submission_frees_the_assignment_on_sync(fake, client):
    study, remote, _ = published(fake, "ret", 1)
    session, lease = participate(fake, client, remote, "P1", finish=False)
    requests.get(f"{fake.url}/submissions/return", params={"session": session}, timeout=5)
    out = run("sync", "--study", "ret")
    assert "1 returned or timed-out assignments freed" in out
    lease.refresh_from_db()
    assert lease.status == Lease.Status.EXPIRED
    participate(fake, client, remote, "P2")  # the only assignment is free again


def test_reject_needs_a_long_reason_and_a_known_submission(fake, client):
    study, remote, _ = published(fake, "rej", 1)
    session, _ = participate(fake, client, remote, "P1")
    run("sync", "--study", "rej")
    with pytest.raises(CommandError, match="at least 100 characters"):
        run("reject", "--study", "rej", "--submission", session, "--reason", "too fast", "--yes")
    with pytest.raises(CommandError, match="not submissions of study rej"):
        run("reject", "--study", "rej", "--submission", "NOPE", "--reason", "x" * 120, "--yes")
    reason = "The answers were given faster than the images can be seen. " * 3
    out = run("reject", "--study", "rej", "--submission", session, "--reason", reason, "--yes")
    assert "reject: 1 done" in out and fake.submissions[session]["status"] == "REJECTED"


def test_sync_pages_through_many_submissions(fake, client):
    fake.page_size = 2
    study, remote, _ = published(fake, "many", 5)
    for i in range(5):
        participate(fake, client, remote, f"P{i}")
    out = run("sync", "--study", "many")
    assert "5 submissions listed" in out
    assert ProlificSubmission.objects.filter(status="AWAITING REVIEW").count() == 5


def test_pause_start_stop_add_places_message(fake, client):
    study, remote, _ = published(fake, "life", 2, "--places", "1")
    assert "ACTIVE → PAUSED" in run("pause", "--study", "life")
    assert "nothing to pause" in run("pause", "--study", "life")
    assert "PAUSED → ACTIVE" in run("start", "--study", "life")
    assert "1 → 2 places" in run("add-places", "--study", "life", "--yes")
    participate(fake, client, remote, "P1")
    run("sync", "--study", "life")
    assert "sent to P1" in run(
        "message", "--study", "life", "--participant", "P1", "--body", "Thanks!"
    )
    assert fake.messages[-1]["body"] == "Thanks!"
    with pytest.raises(CommandError, match="not participants"):
        run("message", "--study", "life", "--participant", "P9", "--body", "hi")
    assert "→" in run("stop", "--study", "life")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--reward", "0.10"], "under the minimum"),
        (["--reward", "abc"], "not an amount"),
        (["--reward", "1.20", "--device", "watch"], "devices are"),
        (["--reward", "1.20", "--filter", "approval_rate>95"], "--filter"),
        (["--reward", "1.20", "--currency", "pounds"], "currency code"),
    ],
)
def test_bad_flags_are_one_line_and_send_nothing(fake, args, message):
    new_study("bad")
    with pytest.raises((CommandError, SystemExit)) as exc:
        run("publish", "--study", "bad", "--yes", *args)
    if isinstance(exc.value, CommandError):
        assert message in str(exc.value)
    assert fake.calls == []
    assert not ProlificStudy.objects.exists()


def test_a_refused_token_says_so(fake):
    new_study("tok")
    fake.fail(r"GET /api/v1/studies", status=401)
    with pytest.raises(CommandError, match="PROLIFIC_API_TOKEN"):
        run("publish", "--study", "tok", "--reward", "1.20", "--yes")


def test_bonus_amounts_are_sent_in_major_units_and_recorded_in_minor(fake, client):
    study, remote, _ = published(fake, "bon", 1)
    session, _ = participate(fake, client, remote, "P1")
    run("sync", "--study", "bon")
    run("bonus", "--study", "bon", "--amount", "0.35", "--participant", "P1", "--yes")
    bonus = ProlificBonus.objects.get()
    assert bonus.amount == 35 and bonus.state in ("paid", "confirmed")
    assert fake.payments[0]["rows"] == [(session, 35)]
    assert Decimal("0.35") == Decimal(bonus.amount) / 100
