"""A lease bound to an MTurk assignment never outlives MTurk's clock: its deadline is the accept
time plus the HIT's assignment duration, autosaves never move it past that, and ``mturk sync``
frees at once the lease of an assignment the worker returned or abandoned."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
import time_machine
from botocore.stub import Stubber
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from annotate import errors
from annotate.models import Event, Lease
from annotate.mturk import handshake
from annotate.mturk.client import get_client, reset_clients
from annotate.mturk.models import Hit, HitAssignment
from annotate.mturk.publish import study_capacity
from annotate.mturk.testing.endpoint import FakeClock, FakeMTurk
from annotate.work.tokens import lease_token
from tests.annotate.mturk.stubs import (
    PUBLIC,
    add_hit,
    assignment_body,
    assignment_id,
    fake_aws,
    hit_body,
    mturk_settings,
    mturk_study,
    run,
    worker_id,
)

pytestmark = pytest.mark.django_db
DURATION = dt.timedelta(minutes=20)  # the HIT's AssignmentDurationInSeconds; leases run 30 min
START = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def hit(monkeypatch, tmp_path, settings) -> Hit:
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)
    study = mturk_study(n_assignments=3, provider="mturk", provider_options={"sandbox": True})
    hit = add_hit(study, 0, size=3)
    Hit.objects.filter(pk=hit.pk).update(duration_seconds=DURATION.seconds)
    hit.refresh_from_db()
    return hit


def accept(hit: Hit, n: int = 1) -> Lease:
    mturk = handshake.Accept(assignment_id(n), hit.hit_id, worker_id(n))
    return handshake.accept_lease(study=hit.study, accept=mturk)


def autosave(client, lease: Lease, position: int):
    item = lease.assignment.items.get(position=position)
    body = {"answers": [{"item": item.key, "label": "4", "ms": 900}]}
    url = reverse("annotate:api-answers", args=[lease_token(lease)])
    return client.put(url, json.dumps(body), "application/json")


def test_autosaves_never_keep_a_lease_past_accept_plus_the_hit_duration(client, hit):
    with time_machine.travel(START, tick=False) as traveller:
        lease = accept(hit)
        limit = HitAssignment.objects.get().accepted + DURATION
        assert HitAssignment.objects.get().accepted == START
        assert (lease.deadline, lease.expires) == (limit, limit)  # capped below 30 minutes
        for position, minutes in enumerate((5, 9, 5)):  # saves at 5, 14 and 19 minutes
            traveller.shift(dt.timedelta(minutes=minutes))
            assert autosave(client, lease, position).status_code == 200
            lease.refresh_from_db()
            assert lease.expires == limit and lease.deadline == limit
        traveller.shift(dt.timedelta(minutes=2))  # 21 minutes: MTurk took the assignment back
        assert autosave(client, lease, 3).status_code == 410
    lease.refresh_from_db()
    assert lease.status == Lease.Status.EXPIRED


def test_a_lease_taken_late_gets_only_what_is_left_of_mturk_s_time(hit):
    HitAssignment.objects.create(  # as sync found it: accepted on MTurk 15 minutes ago
        hit=hit,
        assignment_id=assignment_id(1),
        worker_id=worker_id(1),
        accepted=timezone.now() - dt.timedelta(minutes=15),
    )
    lease = accept(hit)
    row = HitAssignment.objects.get()
    assert row.lease == lease and lease.deadline == row.accepted + DURATION
    assert lease.expires == lease.deadline <= timezone.now() + dt.timedelta(minutes=5)


def test_an_assignment_whose_mturk_time_is_up_gets_no_lease(hit):
    HitAssignment.objects.create(
        hit=hit,
        assignment_id=assignment_id(1),
        worker_id=worker_id(1),
        accepted=timezone.now() - dt.timedelta(minutes=25),
    )
    with pytest.raises(errors.LeaseExpired, match="on Mechanical Turk has run out"):
        accept(hit)
    assert not Lease.objects.exists()


def expect_sync(stub: Stubber, hit: Hit, listed: list[dict], *, pending: int) -> None:
    stub.add_response(
        "get_hit",
        {"HIT": hit_body(hit, NumberOfAssignmentsPending=pending)},
        {"HITId": hit.hit_id},
    )
    stub.add_response("list_assignments_for_hit", {"Assignments": listed}, None)


def test_sync_frees_a_lease_whose_assignment_id_mturk_gave_to_another_worker(hit):
    returned, working = accept(hit, 1), accept(hit, 2)
    reused = assignment_body(3, hit, AssignmentId=assignment_id(1))  # worker 3 got its id
    with Stubber(get_client()) as stub:
        expect_sync(stub, hit, [reused], pending=1)  # worker 2 still at work
        out = run("sync", "--study", hit.study.name)
    returned.refresh_from_db()
    working.refresh_from_db()
    assert returned.status == Lease.Status.EXPIRED and working.status == Lease.Status.ACTIVE
    assert f"freed lease of assignment {assignment_id(1)} worker {worker_id(1)}" in out
    assert "now belongs to another worker" in out
    event = Event.objects.filter(lease=returned, kind=Event.Kind.EXPIRED).get()
    assert event.data["reason"].startswith("mturk: assignment returned or abandoned")


def test_sync_keeps_leases_mturk_may_still_be_working_on_and_never_frees_submitted_work(hit):
    working = accept(hit, 1)
    with Stubber(get_client()) as stub:
        expect_sync(stub, hit, [], pending=1)  # accepted ones are not listed: cannot tell
        run("sync", "--study", hit.study.name)
    working.refresh_from_db()
    assert working.status == Lease.Status.ACTIVE
    Lease.objects.filter(pk=working.pk).update(status=Lease.Status.SUBMITTED)  # a lost submit
    with Stubber(get_client()) as stub:
        expect_sync(stub, hit, [], pending=0)
        out = run("sync", "--study", hit.study.name)
    working.refresh_from_db()
    assert working.status == Lease.Status.SUBMITTED and "freed lease" not in out
    assert f"submitted here, not on MTurk: assignment {assignment_id(1)}" in out


@pytest.fixture
def fake(monkeypatch, tmp_path) -> Iterator[FakeMTurk]:
    fake_aws(monkeypatch, tmp_path)
    with FakeMTurk(clock=FakeClock()) as endpoint:
        with override_settings(
            MTURK_ENDPOINT_URL=endpoint.url, MTURK_SANDBOX=True, PUBLIC_BASE_URL=PUBLIC
        ):
            reset_clients()
            yield endpoint
    reset_clients()


@pytest.mark.parametrize("how", ["returned", "abandoned"])
def test_a_returned_or_abandoned_assignment_frees_its_lease_on_sync(fake, how):
    study = mturk_study(n_assignments=3)
    run("publish", "--study", study.name, "--reward", "0.50", "--duration", "20m", "--yes")
    hit = Hit.objects.get(study=study)
    mturk_id = fake.accept(hit.hit_id, "A1W")
    lease = handshake.accept_lease(
        study=hit.study, accept=handshake.Accept(mturk_id, hit.hit_id, "A1W")
    )
    assert study_capacity(study=study, sandbox=True).live_leases == 1
    if how == "returned":
        fake.return_assignment(mturk_id)
    else:
        fake.clock.advance(DURATION.seconds + 1)  # type: ignore[attr-defined]
    out = run("sync", "--study", study.name)
    lease.refresh_from_db()
    assert lease.status == Lease.Status.EXPIRED
    assert f"freed lease of assignment {mturk_id} worker A1W" in out
    assert study_capacity(study=study, sandbox=True).live_leases == 0
    assert HitAssignment.objects.get().accepted is None  # a re-accept starts the clock again
    assert "freed lease" not in run("sync", "--study", study.name)  # once


def test_sync_frees_a_lease_mturk_lists_as_returned(hit):
    returned = accept(hit, 1)
    listed = [assignment_body(1, hit, "Returned")]  # not in MTurk's API today; taken if sent
    with Stubber(get_client()) as stub:
        expect_sync(stub, hit, listed, pending=1)
        out = run("sync", "--study", hit.study.name)
    returned.refresh_from_db()
    assert returned.status == Lease.Status.EXPIRED and "MTurk lists it Returned" in out
    assert HitAssignment.objects.get().mturk_status == HitAssignment.MTurkStatus.ACCEPTED
