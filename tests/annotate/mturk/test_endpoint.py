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
from annotate.mturk.client import MTurkError, call, get_client, pages, reset_clients
from annotate.mturk.models import Hit, HitAssignment, MTurkCall, MTurkQualification
from annotate.mturk.payments import bonus_token
from annotate.mturk.qualifications import grant_repeat_qualification, repeat_qualification
from annotate.mturk.testing.endpoint import SPELLINGS, FakeClock, FakeMTurk
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


@pytest.fixture
def clocked(monkeypatch, tmp_path):
    """The endpoint on a clock that moves only when told (``endpoint.clock.advance``)."""
    fake_aws(monkeypatch, tmp_path)
    with FakeMTurk(clock=FakeClock()) as endpoint:
        with override_settings(MTURK_ENDPOINT_URL=endpoint.url, MTURK_SANDBOX=True):
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


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_hit_created_but_never_recorded_is_recorded_on_the_next_run(fake, spelling):
    fake.duplicate_spelling = spelling  # how MTurk words "this token was used already"
    study = mturk_study(n_assignments=12)
    publish(study)
    lost = Hit.objects.get(study=study, index=1)
    lost_id = lost.hit_id
    lost.delete()  # the crash of old: MTurk has the HIT, our row is gone, intent and all
    out = publish(study)
    assert len(fake.hits) == 2  # nothing new on MTurk
    assert fake.count("CreateHITWithHITType") == 3  # the retry was answered "already used"
    assert Hit.objects.get(study=study, index=1).hit_id == lost_id
    assert f"recorded HIT {lost_id} created by an earlier, interrupted run" in out
    refused = MTurkCall.objects.get(operation="create_hit_with_hit_type", ok=False)
    assert ("AlreadyExists" in refused.error_code) == ("AlreadyExists" in spelling)


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


def new_hit(token: str, *, auto_approve: int = 3600) -> dict:
    """CreateHITWithHITType over the wire with ``token`` (a HIT type made first)."""
    client = get_client()
    type_id = call(
        client,
        "create_hit_type",
        AutoApprovalDelayInSeconds=auto_approve,
        AssignmentDurationInSeconds=600,
        Reward="0.50",
        Title="t",
        Description="d",
    )["HITTypeId"]
    return call(
        client,
        "create_hit_with_hit_type",
        HITTypeId=type_id,
        MaxAssignments=2,
        LifetimeInSeconds=86400 * 3,
        Question="<ExternalQuestion/>",
        RequesterAnnotation=f"a {token}",
        UniqueRequestToken=token,
    )["HIT"]


def test_the_endpoint_forgets_a_token_after_24_hours_of_its_clock(clocked):
    first = new_hit("tok-1")
    clocked.clock.advance(23 * 3600)
    with pytest.raises(MTurkError, match=first["HITId"]) as caught:
        new_hit("tok-1")
    assert caught.value.code == "AWS.MechanicalTurk.HitAlreadyExists"
    clocked.clock.advance(2 * 3600)  # 25 hours: MTurk creates it again, as the real one would
    assert new_hit("tok-1")["HITId"] != first["HITId"] and len(clocked.hits) == 2


def test_the_endpoint_drops_connections_before_or_after_acting(clocked):
    clocked.drop("CreateHITWithHITType", act=False)
    with pytest.raises(MTurkError) as caught:
        new_hit("tok-a")
    assert caught.value.code == "ConnectionClosedError" and not clocked.hits
    clocked.drop("CreateHITWithHITType", act=True)
    with pytest.raises(MTurkError, match="Connection was closed"):
        new_hit("tok-b")
    assert [h["RequesterAnnotation"] for h in clocked.hits.values()] == ["a tok-b"]


def test_bonuses_are_listed_page_by_page_and_work_auto_approves_on_the_clock(clocked):
    hit = new_hit("tok-x", auto_approve=3600)
    clocked.submit(hit["HITId"], "3ASSIGNX", "A1W")
    client = get_client()
    for n in range(3):
        call(
            client,
            "send_bonus",
            WorkerId="A1W",
            BonusAmount="0.10",
            AssignmentId="3ASSIGNX",
            Reason=f"r{n}",
            UniqueRequestToken=f"b-{n}",
        )
    listed = list(pages(client, "list_bonus_payments", page_size=2, AssignmentId="3ASSIGNX"))
    assert [len(p["BonusPayments"]) for p in listed] == [2, 1]
    assert [b["Reason"] for p in listed for b in p["BonusPayments"]] == ["r0", "r1", "r2"]
    state = call(client, "get_assignment", AssignmentId="3ASSIGNX")["Assignment"]
    assert state["AssignmentStatus"] == "Submitted"
    clocked.clock.advance(3601)
    state = call(client, "get_assignment", AssignmentId="3ASSIGNX")["Assignment"]
    assert (
        state["AssignmentStatus"] == "Approved"
        and state["ApprovalTime"] == state["AutoApprovalTime"]
    )
    with pytest.raises(MTurkError, match="InvalidAssignmentState"):
        call(client, "approve_assignment", AssignmentId="3ASSIGNX")


@pytest.mark.parametrize("spelling", ["used", "processed"])
def test_a_bonus_our_token_already_paid_is_recorded_in_either_spelling(fake, spelling):
    fake.duplicate_spelling = spelling
    study = mturk_study(n_assignments=1)
    publish(study)
    hit = Hit.objects.get(study=study)
    paid = fake.submit(hit.hit_id, "3ASSIGN1", "A1WORKER")["AssignmentId"]
    run("sync", "--study", study.name)
    # Paid under our token an hour ago by a Blindspot that put no reference in its reasons:
    # the lookup cannot tell it is ours, the token still can.
    call(
        get_client(),
        "send_bonus",
        WorkerId="A1WORKER",
        BonusAmount="0.30",
        AssignmentId=paid,
        Reason="Careful work",
        UniqueRequestToken=bonus_token(paid),
    )
    out = run(
        "bonus", "--study", study.name, "--amount", "0.30", "--reason", "Careful work",
        "--worker", "A1WORKER", "--yes",
    )  # fmt: skip
    assert "bonus: 1 done, 0 failed" in out and "MTurk had this bonus already" in out
    assert len(fake.bonuses) == 1
    assert HitAssignment.objects.get(assignment_id=paid).bonused is not None
