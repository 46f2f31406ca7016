"""End to end over HTTP against the local MTurk endpoint, with the real boto3 client: publish
twice creates each HIT once, a crash between create and record heals, and a study goes from
publish through accept, submit, sync, bonus, approve and expire."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import override_settings
from django.urls import reverse

from annotate.models import Item
from annotate.mturk.client import call, get_client, reset_clients
from annotate.mturk.models import Hit, HitAssignment, MTurkCall, MTurkQualification
from annotate.mturk.qualifications import grant_repeat_qualification, repeat_qualification
from annotate.mturk.testing.endpoint import FakeMTurk
from tests.annotate.mturk.stubs import PUBLIC, fake_aws, mturk_study, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(monkeypatch, tmp_path):
    fake_aws(monkeypatch, tmp_path)
    with FakeMTurk() as endpoint:
        with override_settings(
            MTURK_ENDPOINT_URL=endpoint.url, MTURK_SANDBOX=True, PUBLIC_BASE_URL=PUBLIC
        ):
            reset_clients()
            yield endpoint
    reset_clients()


def publish(study, *extra: str) -> str:
    return run("publish", "--study", study.name, "--reward", "0.50", "--yes", *extra)


def test_publishing_twice_creates_each_hit_once(fake):
    study = mturk_study(n_assignments=12)
    first = publish(study)
    second = publish(study)
    assert fake.count("CreateHITWithHITType") == 2 and len(fake.hits) == 2
    assert sorted(h["MaxAssignments"] for h in fake.hits.values()) == [3, 9]
    assert set(Hit.objects.values_list("hit_id", flat=True)) == set(fake.hits)
    assert "created HIT" in first and "Nothing to publish" in second
    question = next(iter(fake.hits.values()))["Question"]
    assert f"<ExternalURL>{PUBLIC}/s/{study.key}/</ExternalURL>" in question


def test_a_hit_created_but_never_recorded_is_recorded_on_the_next_run(fake):
    study = mturk_study(n_assignments=12)
    publish(study)
    lost = Hit.objects.get(study=study, index=1)
    lost_id = lost.hit_id
    lost.delete()  # the crash: MTurk has the HIT, our row was never written
    out = publish(study)
    assert len(fake.hits) == 2  # nothing new on MTurk
    assert fake.count("CreateHITWithHITType") == 3  # the retry was answered HitAlreadyExists
    assert Hit.objects.get(study=study, index=1).hit_id == lost_id
    assert f"recorded HIT {lost_id} created by an earlier, interrupted run" in out
    assert MTurkCall.objects.filter(
        operation="create_hit_with_hit_type", error_code="AWS.MechanicalTurk.HitAlreadyExists"
    ).exists()


def test_throttling_over_the_wire_is_retried(fake):
    fake.fail("GetAccountBalance", kind="ThrottlingException", times=2)
    sleeps: list[float] = []
    response = call(get_client(), "get_account_balance", sleep=sleeps.append)
    assert response["AvailableBalance"] == "10000.00" and len(sleeps) == 2
    assert MTurkCall.objects.get().attempts == 3


def test_the_repeat_worker_qualification_is_created_once_and_granted(fake):
    study = mturk_study(n_assignments=2)
    type_id = repeat_qualification()
    MTurkQualification.objects.all().delete()  # forget the cache: MTurk still has it
    assert repeat_qualification() == type_id  # found again by name, not created twice
    assert [q["Name"] for q in fake.qualifications.values()] == ["blindspot-participated-local"]
    assert grant_repeat_qualification(study=study, worker_id="A1WORKERONE")
    assert fake.grants == {(type_id, "A1WORKERONE"): 1}


def test_granting_never_raises_when_mturk_is_down(fake, settings):
    study = mturk_study(n_assignments=2)
    settings.MTURK_ENDPOINT_URL = "http://127.0.0.1:9"
    reset_clients()
    assert grant_repeat_qualification(study=study, worker_id="A1WORKERONE") is False


def test_a_study_from_publish_to_payment(fake, client):
    study = mturk_study(n_assignments=3)
    publish(study, "--exclude-previous-workers")
    hit = Hit.objects.get(study=study)
    assert fake.hits[hit.hit_id]["QualificationRequirements"][-1]["Comparator"] == "DoesNotExist"

    # Three workers accept on the worker site, which sends them to our page (annotate.views);
    # workers 1 and 2 finish, and our done page hands back the form MTurk expects.
    accepted, forms = {}, {}
    for n in (1, 2, 3):
        location = _accept(fake, hit.hit_id, f"A{n}WORKER")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert location.startswith(f"{PUBLIC}/s/{study.key}/?")
        assert query["turkSubmitTo"] == fake.url and query["hitId"] == hit.hit_id
        start = client.post(
            reverse("annotate:study-start", args=[study.key]), {**query, "consent": "yes"}
        )
        assert start.status_code == 302, start.content
        token = start["Location"].strip("/").split("/")[-1]
        if n != 3:
            forms[n] = _finish(client, token)
        accepted[n] = query["assignmentId"]
    assert {w for _, w in fake.grants} == {"A1WORKER", "A2WORKER", "A3WORKER"}  # on accept
    assert forms[1]["action"] == f"{fake.url}/mturk/externalSubmit"
    assert forms[1]["assignmentId"] == accepted[1]
    # Worker 1's externalSubmit reaches MTurk; worker 2's is lost; worker 3 is still working.
    _external_submit(fake, forms[1])

    out = run("sync", "--study", study.name)
    assert f"submitted here, not on MTurk: assignment {accepted[2]}" in out
    assert HitAssignment.objects.get(assignment_id=accepted[1]).mturk_status == "Submitted"

    run(
        "bonus",
        "--study",
        study.name,
        "--amount",
        "0.20",
        "--reason",
        "Thanks",
        "--worker",
        "A1WORKER",
        "--yes",
    )
    run(
        "bonus",
        "--study",
        study.name,
        "--amount",
        "0.20",
        "--reason",
        "Thanks",
        "--worker",
        "A1WORKER",
        "--yes",
    )
    assert len(fake.bonuses) == 1
    out = run("approve", "--study", study.name, "--passing-only", "--yes")
    assert "approve: 1 done, 0 failed" in out
    assert fake.assignments[accepted[1]]["AssignmentStatus"] == "Approved"

    out = run("status", "--study", study.name)
    assert "spent $0.84: 1 approved ($0.50 + $0.10 fees), 1 bonuses ($0.20 + $0.04 fees)" in out
    assert "balance: $9999.30 available" in out

    assert "expire: 1 done" in run("expire", "--study", study.name)
    assert fake.hits[hit.hit_id]["Expiration"] < 1500000000
    out = run("sync", "--study", study.name)
    assert "HIT " + hit.hit_id + ": Unassignable" in out  # worker 3 still holds an assignment


def test_extending_over_the_wire(fake):
    study = mturk_study(n_assignments=12)
    publish(study, "--assignments-per-hit", "8")
    run("extend", "--study", study.name, "--assignments", "1", "--hours", "12", "--yes")
    assert sorted(h["MaxAssignments"] for h in fake.hits.values()) == [5, 9]
    # a retry with the same target is recognised by its token and only recorded
    Hit.objects.filter(study=study).update(max_assignments=8)
    Hit.objects.filter(study=study, index=1).update(max_assignments=4)
    out = run("extend", "--study", study.name, "--assignments", "1", "--yes")
    assert "MTurk had added these already; recorded" in out
    assert sorted(h["MaxAssignments"] for h in fake.hits.values()) == [5, 9]


def _accept(fake: FakeMTurk, hit_id: str, worker: str) -> str:
    """GET /accept on the fake worker site; the redirect it answers with (not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    query = urlencode({"hitId": hit_id, "workerId": worker})
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(f"{fake.url}/accept?{query}", timeout=5)
    assert caught.value.code == 302
    return caught.value.headers["Location"]


def _finish(client, token: str) -> dict[str, str]:
    """Answer every image through the worker API (the check's digit is a 3: see mturk_study),
    submit, and read the externalSubmit form off the done page."""
    items = client.get(reverse("annotate:api-work", args=[token])).json()["items"]
    checks = set(Item.objects.filter(is_attention=True).values_list("key", flat=True))
    answers = [
        {"item": i["key"], "label": "3" if i["key"] in checks else "5", "ms": 500} for i in items
    ]
    submitted = client.post(
        reverse("annotate:api-submit", args=[token]),
        {"answers": answers},
        content_type="application/json",
    )
    assert submitted.status_code == 200, submitted.content
    html = client.get(reverse("annotate:work-done", args=[token])).content.decode()
    form = dict(re.findall(r'name="(assignmentId|completion_code)" value="([^"]*)"', html))
    form["action"] = re.search(r'<form id="handback" method="post" action="([^"]+)"', html)[1]
    return form


def _external_submit(fake: FakeMTurk, form: dict[str, str]) -> None:
    """Post the done page's form to the endpoint, as the worker's browser does."""
    fields = {k: v for k, v in form.items() if k != "action"}
    with urllib.request.urlopen(form["action"], urlencode(fields).encode(), timeout=5) as r:
        assert r.status == 200
