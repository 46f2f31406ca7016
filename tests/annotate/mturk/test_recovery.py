"""Nothing created twice, nothing paid twice — at any delay. At each creating or paying step the
process is interrupted between "intent written" and "MTurk's answer heard": the call never
reaches MTurk, or MTurk acts and the answer is lost; the connection drops, or the process dies
outright. The rerun comes 1 hour or 25 hours later (MTurk forgets a UniqueRequestToken after
24). Real boto3 client, local endpoint with a clock of its own; ``time_machine`` moves ours."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator

import pytest
import time_machine
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from annotate.mturk import handshake
from annotate.mturk.client import get_client, reset_clients
from annotate.mturk.models import Hit, HitAssignment
from annotate.mturk.testing.endpoint import FakeClock, FakeMTurk
from tests.annotate.mturk.stubs import PUBLIC, fake_aws, mturk_study, run

pytestmark = pytest.mark.django_db
HOUR = 3600


class Killed(BaseException):
    """The process dies here: nothing of ours runs after it (not even an ``except Exception``)."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(monkeypatch, tmp_path, clock) -> Iterator[FakeMTurk]:
    fake_aws(monkeypatch, tmp_path)
    with FakeMTurk(clock=clock) as endpoint:
        with override_settings(
            MTURK_ENDPOINT_URL=endpoint.url, MTURK_SANDBOX=True, PUBLIC_BASE_URL=PUBLIC
        ):
            reset_clients()
            yield endpoint
    reset_clients()


def interrupt(fake: FakeMTurk, operation: str, *, how: str, acted: bool) -> None:
    """The next ``operation`` is cut off: ``dropped`` (the connection closes unanswered) or
    ``killed`` (the process dies), before MTurk acts or after it acted (``acted``)."""
    if how == "dropped":
        fake.drop(operation, act=acted)
        return
    event = f"after-call.mturk.{operation}" if acted else f"before-send.mturk.{operation}"

    def die(**kwargs: object) -> None:
        raise Killed(event)

    get_client().meta.events.register(event, die)


def interrupted_run(how: str, *args: str) -> None:
    """``manage.py mturk …`` cut off as ``interrupt`` arranged; a new process comes next."""
    expected = Killed if how == "killed" else CommandError
    with pytest.raises(expected):
        run(*args)
    reset_clients()  # the next run is another process, with a client of its own


def later(clock: FakeClock, hours: int) -> time_machine.travel:
    """``hours`` pass for MTurk (its clock) and for us (``time_machine``)."""
    clock.advance(hours * HOUR)
    return time_machine.travel(timezone.now() + dt.timedelta(hours=hours), tick=True)


def publish(study) -> str:
    return run("publish", "--study", study.name, "--reward", "0.50", "--yes")


HOW = pytest.mark.parametrize("how", ["dropped", "killed"])
ACTED = pytest.mark.parametrize("acted", [False, True], ids=["never-reached", "acted-answer-lost"])
HOURS = pytest.mark.parametrize("hours", [1, 25], ids=["1h", "25h"])


@HOURS
@ACTED
@HOW
def test_each_hit_is_created_once_however_and_whenever_its_creation_was_cut_off(
    fake, clock, how, acted, hours
):
    study = mturk_study(n_assignments=12)  # two HITs: 9 and 3 assignments
    interrupt(fake, "CreateHITWithHITType", how=how, acted=acted)
    interrupted_run(how, "publish", "--study", study.name, "--reward", "0.50", "--yes")
    intent = Hit.objects.get(study=study)  # written before the call, left pending by the cut
    assert (intent.index, intent.state, intent.hit_id) == (0, Hit.State.PENDING, None)
    assert len(fake.hits) == int(acted)

    with later(clock, hours):
        out = publish(study)
        assert "Nothing to publish" in publish(study)  # and a third run changes nothing
    per_annotation = Counter(h["RequesterAnnotation"] for h in fake.hits.values())
    assert sorted(per_annotation.values()) == [1, 1]  # exactly one HIT per token
    assert sorted(h["MaxAssignments"] for h in fake.hits.values()) == [3, 9]
    assert not Hit.objects.pending().exists()
    assert set(Hit.objects.values_list("hit_id", flat=True)) == set(fake.hits)
    first = Hit.objects.get(study=study, index=0)
    assert fake.hits[first.hit_id]["RequesterAnnotation"] == first.annotation
    recovered = f"recorded HIT {first.hit_id} created by an earlier, interrupted run" in out
    assert recovered == acted


@HOURS
@ACTED
@HOW
def test_each_bonus_is_paid_once_however_and_whenever_its_payment_was_cut_off(
    fake, clock, how, acted, hours
):
    study = mturk_study(n_assignments=3)
    publish(study)
    hit = Hit.objects.get(study=study)
    done = {w: fake.submit(hit.hit_id, f"3ASSIGN{w}", w)["AssignmentId"] for w in ("A1W", "A2W")}
    run("sync", "--study", study.name)
    bonus = ("bonus", "--study", study.name, "--amount", "0.30", "--reason", "Careful work")
    workers = ("--worker", "A1W", "--worker", "A2W", "--yes")
    interrupt(fake, "SendBonus", how=how, acted=acted)  # A1W's bonus, the first one sent
    interrupted_run(how, *bonus, *workers)
    first = HitAssignment.objects.get(worker_id="A1W")
    assert first.bonus_intended is not None and first.bonused is None  # intent, no record
    assert (first.bonus_token, str(first.bonus)) == (f"bs-bonus-{done['A1W']}", "0.30")
    assert len(fake.bonuses) == int(acted) + (how == "dropped")  # a drop lets A2W's go on

    with later(clock, hours):
        out = run(*bonus, *workers)
        again = run(*bonus, *workers)
    assert Counter(b["AssignmentId"] for b in fake.bonuses) == {a: 1 for a in done.values()}
    assert all(
        b["Reason"] == f"Careful work [ref bs-bonus-{b['AssignmentId']}]" for b in fake.bonuses
    )
    assert ("MTurk had this bonus already; recorded" in out) == acted
    assert "Nothing to bonus" in again
    rows = HitAssignment.objects.filter(hit=hit)
    assert all(r.bonused is not None and str(r.bonus) == "0.30" for r in rows)
    assert "spent $0.72" in run("status", "--study", study.name)  # 2 × ($0.30 + $0.06 fee)


def test_a_bonus_found_on_mturk_is_recorded_at_the_amount_paid(fake, clock):
    study = mturk_study(n_assignments=1)
    publish(study)
    hit = Hit.objects.get(study=study)
    fake.submit(hit.hit_id, "3ASSIGN1", "A1W")
    run("sync", "--study", study.name)
    fake.drop("SendBonus", act=True)
    base = ("bonus", "--study", study.name, "--reason", "r", "--worker", "A1W", "--yes")
    with pytest.raises(CommandError):
        run(*base, "--amount", "0.30")
    with later(clock, 25):
        out = run(*base, "--amount", "0.50")  # the operator asks again, for another amount
    assert [b["BonusAmount"] for b in fake.bonuses] == ["0.30"]
    assert "MTurk had this bonus already; recorded as paid, $0.30 (not $0.50)" in out
    assert str(HitAssignment.objects.get().bonus) == "0.30"


def test_work_mturk_approved_by_itself_is_approved_not_a_failure(fake, clock):
    study = mturk_study(n_assignments=2)
    run("publish", "--study", study.name, "--reward", "0.50", "--auto-approve", "1h", "--yes")
    hit = Hit.objects.get(study=study)
    fake.submit(hit.hit_id, "3ASSIGN1", "A1W")
    run("sync", "--study", study.name)
    clock.advance(2 * HOUR)  # past AutoApprovalDelayInSeconds: MTurk approved it itself
    out = run("approve", "--study", study.name, "--include-unknown", "--yes")
    assert "approve: 1 done, 0 failed" in out
    assert "3ASSIGN1: auto-approved by MTurk; recorded as approved" in out
    row = HitAssignment.objects.get()
    assert row.mturk_status == HitAssignment.MTurkStatus.APPROVED and row.reviewed is not None
    assert fake.count("GetAssignment") == 1


def test_an_interrupted_hit_is_found_on_any_page_of_list_hits(fake, clock):
    type_id = fake.handle("CreateHITType", {"Reward": "0.10", "AssignmentDurationInSeconds": 60})
    for n in range(150):  # someone's other HITs, listed before ours
        params = {"LifetimeInSeconds": 86400, "RequesterAnnotation": f"other {n}"}
        fake.handle("CreateHITWithHITType", {**type_id, **params})
    study = mturk_study(n_assignments=3)
    fake.drop("CreateHITWithHITType", act=True)
    with pytest.raises(CommandError):
        publish(study)
    with later(clock, 25):
        out = publish(study)
    assert fake.count("ListHITs") == 2  # 100 + 51: ours was on the second page
    mine = [h for h in fake.hits.values() if h["RequesterAnnotation"].startswith(study.name)]
    assert len(mine) == 1 and Hit.objects.get(study=study).hit_id == mine[0]["HITId"]
    assert "created by an earlier, interrupted run" in out


def test_a_worker_who_finds_a_hit_we_never_heard_of_is_let_in_and_the_hit_recorded(fake):
    study = mturk_study(n_assignments=3)
    fake.drop("CreateHITWithHITType", act=True)
    with pytest.raises(CommandError):
        publish(study)
    (created,) = fake.hits  # on MTurk, unknown to us but for the pending intent
    mturk_id = fake.accept(created, "A1W")
    lease = handshake.accept_lease(study=study, accept=handshake.Accept(mturk_id, created, "A1W"))
    hit = Hit.objects.get(study=study)
    assert (hit.hit_id, hit.state) == (created, Hit.State.PUBLISHED)
    assert HitAssignment.objects.get().lease == lease
    assert "Nothing to publish" in publish(study) and len(fake.hits) == 1
