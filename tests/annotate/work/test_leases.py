"""Leasing, autosave and submission services: limits, expiry, replays, bad answers."""

from __future__ import annotations

import base64
import datetime as dt
import io

import pytest
from django.core import signing
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from django.utils import timezone

from annotate import errors
from annotate.errors import AlreadySubmitted, ImageUnavailable
from annotate.models import Answer, Assignment, Event, Lease, Worker
from annotate.stimuli.imaging import canonical_png
from annotate.work import leases
from annotate.work.answers import answers_save, lease_submit
from annotate.work.leases import (
    _candidates,
    lease_acquire,
    lease_from_token,
    leases_expire,
    study_for_key,
    use_skip_locked,
)
from annotate.work.payload import lease_serve
from annotate.work.tokens import SALT, lease_token
from tests.annotate.factories import make_set, make_study

pytestmark = pytest.mark.django_db


def answers_for(lease, label="3"):
    return [{"item": i.key, "label": label, "ms": 500} for i in lease.assignment.items.all()]


def snapshot():
    """Everything a refused request must leave unchanged."""
    return (
        sorted(Answer.objects.values_list("lease_id", "item_id", "label", "response_ms")),
        sorted(Lease.objects.values_list("id", "status", "submitted")),
    )


@pytest.fixture(params=[True, False], ids=["skip-locked", "fallback"])
def path(request):
    if request.param and not use_skip_locked():
        pytest.skip("this database has no SKIP LOCKED")
    return request.param


def test_lease_resume_limit_and_full(path):
    study = make_study(n_assignments=3, assignments_per_worker=2)
    a = lease_acquire(study=study, worker_id="alice", attempt="tab-1", skip_locked=path)
    assert lease_acquire(study=study, worker_id="alice", attempt="tab-1", skip_locked=path) == a
    lease_submit(lease=a, answers=answers_for(a))
    b = lease_acquire(study=study, worker_id="alice", skip_locked=path)
    assert b.assignment != a.assignment and b.slot != a.slot
    lease_submit(lease=b, answers=answers_for(b))
    with pytest.raises(errors.AlreadyParticipated):
        lease_acquire(study=study, worker_id="alice", skip_locked=path)
    lease_acquire(study=study, worker_id="bob", skip_locked=path)
    with pytest.raises(errors.StudyFull):
        lease_acquire(study=study, worker_id="carol", skip_locked=path)


def test_anonymous_workers_get_distinct_ids_and_bad_ids_are_refused():
    study = make_study(n_assignments=2)
    a = lease_acquire(study=study, worker_id=None)
    b = lease_acquire(study=study, worker_id="")
    assert a.worker != b.worker and a.worker.source == Worker.Source.ANONYMOUS
    with pytest.raises(errors.InvalidSubmission):
        lease_acquire(study=study, worker_id="<script>")
    with pytest.raises(errors.StudyFull):  # a third anonymous visitor: no row left behind
        lease_acquire(study=study, worker_id=None)
    assert Worker.objects.count() == 2


def test_closed_and_unknown_studies():
    study = make_study(n_assignments=1, status="closed")
    with pytest.raises(errors.StudyClosed):
        study_for_key(study.key)
    with pytest.raises(errors.StudyNotFound):
        study_for_key("nope")


def test_a_worker_never_gets_two_versions_of_one_source_image(path):
    # Two conditions over the same 10 sources: assignments 0–1 hold condition A, 2–3 hold B.
    sets = [make_set(10), make_set(10)]
    study = make_study(sets, n_assignments=4, size=5, assignments_per_worker=4)
    first = lease_acquire(study=study, worker_id="w", skip_locked=path)
    lease_submit(lease=first, answers=answers_for(first))
    got = [first.assignment.index]
    while True:
        try:
            lease = lease_acquire(study=study, worker_id="w", skip_locked=path)
        except errors.StudyFull:
            break
        got.append(lease.assignment.index)
        lease_submit(lease=lease, answers=answers_for(lease))
    sources = [
        s
        for lease in Lease.objects.filter(worker__external_id="w")
        for s in lease.assignment.items.values_list("stimulus__source_index", flat=True)
    ]
    assert len(sources) == len(set(sources)) and len(got) == 2


def test_expired_lease_returns_to_the_pool_and_keeps_its_drafts(path):
    study = make_study(n_assignments=1, lease_seconds=60)
    old = lease_acquire(study=study, worker_id="slow", skip_locked=path)
    answers_save(lease=old, answers=answers_for(old)[:2])
    later = timezone.now() + dt.timedelta(seconds=120)
    new = lease_acquire(study=study, worker_id="fast", now=later, skip_locked=path)
    assert new.assignment == old.assignment
    old.refresh_from_db()
    assert old.status == Lease.Status.EXPIRED
    assert old.answers.count() == 2  # kept, attached to the expired lease
    assert lease_serve(new)["answers"] == {}  # not shown to the next worker
    assert Event.objects.filter(kind=Event.Kind.EXPIRED, lease=old).count() == 1
    with pytest.raises(errors.LeaseExpired):
        answers_save(lease=old, answers=answers_for(old))


def test_a_save_keeps_an_active_lease_alive():
    study = make_study(n_assignments=1, lease_seconds=60)
    lease = lease_acquire(study=study, worker_id="w")
    soon = timezone.now() + dt.timedelta(seconds=50)
    answers_save(lease=lease, answers=answers_for(lease)[:1], now=soon)
    lease.refresh_from_db()
    assert lease.expires >= soon + dt.timedelta(seconds=59)


def test_replayed_submit_stores_one_answer_set():
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    code = lease_submit(lease=lease, answers=answers_for(lease))
    before = snapshot()
    assert lease_submit(lease=lease, answers=answers_for(lease)) == code
    assert lease_submit(lease=lease, answers=None) == code
    with pytest.raises(AlreadySubmitted):
        lease_submit(lease=lease, answers=answers_for(lease, label="7"))
    with pytest.raises(AlreadySubmitted):
        answers_save(lease=lease, answers=answers_for(lease, label="7"))
    assert snapshot() == before
    assert Event.objects.filter(kind=Event.Kind.SUBMITTED).count() == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a[:-1], "of 5 images are answered"),
        (lambda a: a + a[:1], "answers were sent"),
        (lambda a: [{**a[0], "label": "x"}] + a[1:], "label"),
        (lambda a: [{**a[0], "label": 3}] + a[1:], "label"),
        (lambda a: [{**a[0], "item": "unknown"}] + a[1:], "not in this task"),
        (lambda a: [a[0], a[0]] + a[2:], "repeats"),
        (lambda a: [{**a[0], "ms": -1}] + a[1:], "response time"),
        (lambda a: [{**a[0], "extra": 1}] + a[1:], "must be an object"),
        (lambda a: "3333", "must be a list"),
    ],
)
def test_malformed_submissions_change_nothing(mutate, message):
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    answers_save(lease=lease, answers=answers_for(lease)[:1])
    before = snapshot()
    with pytest.raises(errors.InvalidSubmission, match=message):
        lease_submit(lease=lease, answers=mutate(answers_for(lease)))
    assert snapshot() == before


def test_a_foreign_item_is_refused():
    study = make_study(n_assignments=2)
    mine = lease_acquire(study=study, worker_id="a")
    theirs = lease_acquire(study=study, worker_id="b")
    before = snapshot()
    with pytest.raises(errors.InvalidSubmission, match="not in this task"):
        answers_save(lease=mine, answers=answers_for(theirs)[:1])
    assert snapshot() == before


def test_forged_tokens_are_refused():
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    token = lease_token(lease)
    assert lease_from_token(token) == lease
    for forged in (token[:-1] + ("A" if token[-1] != "A" else "B"), "abc", "", "x" * 500):
        with pytest.raises(errors.InvalidToken):
            lease_from_token(forged)


def test_fallback_survives_a_race_lost_between_selection_and_insert(monkeypatch):
    """A competitor takes the first candidate after we listed it: we move on, never share."""
    study = make_study(n_assignments=2)
    rival = Worker.objects.create(external_id="rival")
    real = _candidates

    def stale(study_, worker):
        qs = real(study_, worker)
        ids = list(qs.values_list("pk", flat=True))
        now = timezone.now()
        for pk in ids[:1]:
            Lease.objects.create(
                study=study, assignment_id=pk, worker=rival, slot=0, leased=now, expires=now
                + dt.timedelta(hours=1),
            )  # fmt: skip
        return qs.model.objects.filter(pk__in=ids).order_by("index")

    monkeypatch.setattr(leases, "_candidates", stale)
    monkeypatch.setattr(leases, "SPREAD", 1)
    lease = lease_acquire(study=study, worker_id="w", skip_locked=False)
    assert lease.assignment.index == 1
    live = Lease.objects.exclude(status=Lease.Status.EXPIRED)
    assert live.values("assignment").distinct().count() == live.count() == 2


def test_the_constraint_refuses_a_second_live_lease_even_without_the_service():
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    other = Worker.objects.create(external_id="x")
    with pytest.raises(IntegrityError):
        Lease.objects.create(
            study=study, assignment=lease.assignment, worker=other, slot=0,
            leased=lease.leased, expires=lease.expires,
        )  # fmt: skip


def test_autosave_can_clear_a_box_but_submit_cannot():
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    answers = answers_for(lease)
    assert answers_save(lease=lease, answers=answers[:2]) == 2
    cleared = [{"item": answers[0]["item"], "label": None}]
    assert answers_save(lease=lease, answers=cleared) == 1
    assert answers[0]["item"] not in lease_serve(lease)["answers"]
    with pytest.raises(errors.InvalidSubmission, match="label"):
        lease_submit(lease=lease, answers=[*cleared, *answers[1:]])


def test_payload_carries_the_stored_pixels_inline_and_a_missing_file_is_a_clear_503():
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    first = lease.assignment.items.order_by("position").first()
    image = lease_serve(lease)["items"][0]["image"]
    prefix = "data:image/png;base64,"
    assert image.startswith(prefix)
    with first.stimulus.image.open("rb") as fh:
        assert base64.b64decode(image[len(prefix) :]) == canonical_png(fh.read())
    first.stimulus.image.storage.delete(first.stimulus.image.name)
    with pytest.raises(ImageUnavailable):
        lease_serve(lease)


def test_tokens_are_stable_salted_and_name_only_their_lease():
    study = make_study(n_assignments=2)
    lease = lease_acquire(study=study, worker_id="w")
    token = lease_token(lease)
    assert lease_token(Lease.objects.get(pk=lease.pk)) == token  # one lease, one URL
    assert lease_from_token(token) == lease
    unsalted = signing.Signer().sign(lease.key)  # the right key, signed for another purpose
    with pytest.raises(errors.InvalidToken):
        lease_from_token(unsalted)
    with pytest.raises(errors.InvalidToken):  # a validly signed key of no lease
        lease_from_token(signing.Signer(salt=SALT).sign("no-such-lease"))


def test_lease_from_token_reads_without_writing_and_returns_submitted_leases():
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    assert lease_from_token(lease_token(lease)) == lease
    Lease.objects.filter(pk=lease.pk).update(expires=timezone.now() - dt.timedelta(seconds=1))
    before = Event.objects.count()
    with pytest.raises(errors.LeaseExpired):
        lease_from_token(lease_token(lease))
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.ACTIVE  # a read writes nothing
    assert Event.objects.count() == before
    assert lease_from_token(lease_token(lease), current=False) == lease  # for a write to decide
    Lease.objects.filter(pk=lease.pk).update(expires=timezone.now() + dt.timedelta(hours=1))
    lease.refresh_from_db()
    lease_submit(lease=lease, answers=answers_for(lease))
    again = lease_from_token(lease_token(lease))
    assert again.status == Lease.Status.SUBMITTED


def test_a_lease_is_resumed_without_a_new_event_and_each_step_is_logged():
    study = make_study(n_assignments=2)
    lease = lease_acquire(study=study, worker_id="w", attempt="a1")
    assert lease_acquire(study=study, worker_id="w", attempt="a1") == lease
    lease_serve(lease)
    answers_save(lease=lease, answers=answers_for(lease)[:2])
    lease_submit(lease=lease, answers=answers_for(lease))
    lease_submit(lease=lease, answers=None)  # a replay logs nothing
    events = list(Event.objects.filter(study=study).values_list("kind", "lease", "worker", "data"))
    assert [kind for kind, *_ in events] == ["leased", "served", "saved", "submitted"]
    assert {(lease_id, worker_id) for _, lease_id, worker_id, _ in events} == {
        (lease.pk, lease.worker_id)
    }
    assert events[2][3] == {"count": 2}


def race_in(monkeypatch, *, insert) -> None:
    """Make ``insert()`` run once, between the fallback's candidate list and its INSERT.

    (On the SKIP LOCKED path the list is read inside the transaction that inserts, so a row
    injected there would roll back with it; the PostgreSQL thread tests cover that path.)
    """
    real = _candidates
    done = []

    def candidates(study, worker):
        ids = list(real(study, worker).values_list("pk", flat=True))
        if not done:
            done.append(insert(ids))
        return Assignment.objects.filter(pk__in=ids).order_by("index")  # the stale list

    monkeypatch.setattr(leases, "_candidates", candidates)
    monkeypatch.setattr(leases, "SPREAD", 1)


def test_a_worker_racing_itself_on_the_fallback_gets_its_one_active_lease(monkeypatch):
    study = make_study(n_assignments=3)
    worker = Worker.objects.create(external_id="w")
    now = timezone.now()

    def twin(ids):  # the same client's other request (a double click) wins the first candidate
        return Lease.objects.create(
            study=study, assignment_id=ids[0], worker=worker, slot=0, leased=now,
            expires=now + dt.timedelta(hours=1), attempt="page-1",
        )  # fmt: skip

    race_in(monkeypatch, insert=twin)
    lease = lease_acquire(study=study, worker_id="w", attempt="page-1", skip_locked=False)
    assert Lease.objects.filter(study=study).count() == 1
    assert lease == Lease.objects.get()


def test_a_lost_slot_race_on_the_fallback_rechecks_the_limit(monkeypatch):
    """The worker's last free slot is taken by their own concurrent lease that was submitted."""
    study = make_study(n_assignments=4, assignments_per_worker=2)
    first = lease_acquire(study=study, worker_id="w", skip_locked=False)
    lease_submit(lease=first, answers=answers_for(first))
    now = timezone.now()

    def twin(ids):
        return Lease.objects.create(
            study=study, assignment_id=ids[-1], worker=first.worker, slot=1, leased=now,
            expires=now, submitted=now, status=Lease.Status.SUBMITTED,
        )  # fmt: skip

    race_in(monkeypatch, insert=twin)
    with pytest.raises(errors.AlreadyParticipated):
        lease_acquire(study=study, worker_id="w", skip_locked=False)
    live = Lease.objects.filter(worker=first.worker).exclude(status=Lease.Status.EXPIRED)
    assert sorted(live.values_list("slot", flat=True)) == [0, 1]


def test_an_expired_lease_still_counts_as_seen_but_not_against_the_limit(monkeypatch, path):
    # Conditions A and B over the same sources: 0 = A[0:5], 1 = A[5:10], 2 = B[0:5], 3 = B[5:10].
    monkeypatch.setattr(leases, "SPREAD", 1)  # the fallback takes candidates in order
    study = make_study([make_set(10), make_set(10)], n_assignments=4, size=5)
    old = lease_acquire(study=study, worker_id="w", skip_locked=path)
    assert old.assignment.index == 0
    later = timezone.now() + dt.timedelta(seconds=study.lease_seconds + 1)
    again = lease_acquire(study=study, worker_id="w", now=later, skip_locked=path)
    old.refresh_from_db()
    assert old.status == Lease.Status.EXPIRED
    assert again.assignment.index == 1  # not 0 or 2: the worker has seen those source images


def test_a_save_that_extended_the_lease_beats_a_stale_expiry():
    study = make_study(n_assignments=1, lease_seconds=60)
    lease = lease_acquire(study=study, worker_id="w")
    stale = Lease.objects.get(pk=lease.pk)  # read before the save below, expires at +60 s
    answers_save(
        lease=lease, answers=answers_for(lease)[:1], now=lease.leased + dt.timedelta(seconds=50)
    )
    at = lease.leased + dt.timedelta(seconds=70)  # past the stale deadline, within the new one
    assert answers_save(lease=stale, answers=answers_for(lease)[:2], now=at) == 2
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.ACTIVE
    assert leases_expire(now=at) == 0


def test_a_replay_of_some_of_the_same_answers_gets_the_code_and_writes_nothing():
    study = make_study(n_assignments=1)
    lease = lease_acquire(study=study, worker_id="w")
    code = lease_submit(lease=lease, answers=answers_for(lease))
    before = snapshot()
    stale = Lease.objects.get(pk=lease.pk)
    assert lease_submit(lease=stale, answers=answers_for(lease)[:2]) == code
    with pytest.raises(AlreadySubmitted) as refused:
        answers_save(lease=stale, answers=[{"item": "garbage", "label": "x"}])
    assert refused.value.status == 409
    assert snapshot() == before


def test_expire_leases_command_expires_only_overdue_leases_of_the_named_study():
    one, two = make_study(n_assignments=1), make_study(n_assignments=1)
    a = lease_acquire(study=one, worker_id="a")
    b = lease_acquire(study=two, worker_id="b")
    Lease.objects.update(expires=timezone.now() - dt.timedelta(seconds=1))
    out = io.StringIO()
    call_command("expire_leases", "--study", one.name, stdout=out)
    assert out.getvalue().strip() == "expired 1 lease"
    assert Lease.objects.get(pk=a.pk).status == Lease.Status.EXPIRED
    assert Lease.objects.get(pk=b.pk).status == Lease.Status.ACTIVE
    call_command("expire_leases", stdout=out)
    assert Lease.objects.get(pk=b.pk).status == Lease.Status.EXPIRED
    assert Event.objects.filter(kind=Event.Kind.EXPIRED).count() == 2
    with pytest.raises(CommandError, match="no study named nope"):
        call_command("expire_leases", "--study", "nope")
