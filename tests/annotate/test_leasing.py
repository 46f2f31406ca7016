"""Leasing, autosave and submission services: limits, expiry, replays, bad answers."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError
from django.utils import timezone

from annotate import errors, leasing
from annotate.models import Answer, Event, Lease, Worker
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
    if request.param and not leasing.use_skip_locked():
        pytest.skip("this database has no SKIP LOCKED")
    return request.param


def test_lease_resume_limit_and_full(path):
    study = make_study(n_assignments=3, assignments_per_worker=2)
    a = leasing.lease_acquire(study=study, worker_id="alice", skip_locked=path)
    assert leasing.lease_acquire(study=study, worker_id="alice", skip_locked=path) == a
    leasing.lease_submit(lease=a, answers=answers_for(a))
    b = leasing.lease_acquire(study=study, worker_id="alice", skip_locked=path)
    assert b.assignment != a.assignment and b.slot != a.slot
    leasing.lease_submit(lease=b, answers=answers_for(b))
    with pytest.raises(errors.AlreadyParticipated):
        leasing.lease_acquire(study=study, worker_id="alice", skip_locked=path)
    leasing.lease_acquire(study=study, worker_id="bob", skip_locked=path)
    with pytest.raises(errors.StudyFull):
        leasing.lease_acquire(study=study, worker_id="carol", skip_locked=path)


def test_anonymous_workers_get_distinct_ids_and_bad_ids_are_refused():
    study = make_study(n_assignments=2)
    a = leasing.lease_acquire(study=study, worker_id=None)
    b = leasing.lease_acquire(study=study, worker_id="")
    assert a.worker != b.worker and a.worker.source == Worker.Source.ANONYMOUS
    with pytest.raises(errors.InvalidSubmission):
        leasing.lease_acquire(study=study, worker_id="<script>")


def test_closed_and_unknown_studies():
    study = make_study(n_assignments=1, status="closed")
    with pytest.raises(errors.StudyClosed):
        leasing.study_for_key(study.key)
    with pytest.raises(errors.StudyNotFound):
        leasing.study_for_key("nope")


def test_a_worker_never_gets_two_versions_of_one_source_image(path):
    # Two conditions over the same 10 sources: assignments 0–1 hold condition A, 2–3 hold B.
    sets = [make_set(10), make_set(10)]
    study = make_study(sets, n_assignments=4, size=5, assignments_per_worker=4)
    first = leasing.lease_acquire(study=study, worker_id="w", skip_locked=path)
    leasing.lease_submit(lease=first, answers=answers_for(first))
    got = [first.assignment.index]
    while True:
        try:
            lease = leasing.lease_acquire(study=study, worker_id="w", skip_locked=path)
        except errors.StudyFull:
            break
        got.append(lease.assignment.index)
        leasing.lease_submit(lease=lease, answers=answers_for(lease))
    sources = [
        s
        for lease in Lease.objects.filter(worker__external_id="w")
        for s in lease.assignment.items.values_list("stimulus__source_index", flat=True)
    ]
    assert len(sources) == len(set(sources)) and len(got) == 2


def test_expired_lease_returns_to_the_pool_and_keeps_its_drafts(path):
    study = make_study(n_assignments=1, lease_seconds=60)
    old = leasing.lease_acquire(study=study, worker_id="slow", skip_locked=path)
    leasing.answers_save(lease=old, answers=answers_for(old)[:2])
    later = timezone.now() + dt.timedelta(seconds=120)
    new = leasing.lease_acquire(study=study, worker_id="fast", now=later, skip_locked=path)
    assert new.assignment == old.assignment
    old.refresh_from_db()
    assert old.status == Lease.Status.EXPIRED
    assert old.answers.count() == 2  # kept, attached to the expired lease
    assert leasing.lease_payload(new)["answers"] == {}  # not shown to the next worker
    assert Event.objects.filter(kind=Event.Kind.EXPIRED, lease=old).count() == 1
    with pytest.raises(errors.LeaseExpired):
        leasing.answers_save(lease=old, answers=answers_for(old))


def test_a_save_keeps_an_active_lease_alive():
    study = make_study(n_assignments=1, lease_seconds=60)
    lease = leasing.lease_acquire(study=study, worker_id="w")
    soon = timezone.now() + dt.timedelta(seconds=50)
    leasing.answers_save(lease=lease, answers=answers_for(lease)[:1], now=soon)
    lease.refresh_from_db()
    assert lease.expires >= soon + dt.timedelta(seconds=59)


def test_replayed_submit_stores_one_answer_set():
    study = make_study(n_assignments=1)
    lease = leasing.lease_acquire(study=study, worker_id="w")
    code = leasing.lease_submit(lease=lease, answers=answers_for(lease))
    before = snapshot()
    assert leasing.lease_submit(lease=lease, answers=answers_for(lease)) == code
    assert leasing.lease_submit(lease=lease, answers=None) == code
    with pytest.raises(leasing.AlreadySubmitted):
        leasing.lease_submit(lease=lease, answers=answers_for(lease, label="7"))
    with pytest.raises(leasing.AlreadySubmitted):
        leasing.answers_save(lease=lease, answers=answers_for(lease, label="7"))
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
    lease = leasing.lease_acquire(study=study, worker_id="w")
    leasing.answers_save(lease=lease, answers=answers_for(lease)[:1])
    before = snapshot()
    with pytest.raises(errors.InvalidSubmission, match=message):
        leasing.lease_submit(lease=lease, answers=mutate(answers_for(lease)))
    assert snapshot() == before


def test_a_foreign_item_is_refused():
    study = make_study(n_assignments=2)
    mine = leasing.lease_acquire(study=study, worker_id="a")
    theirs = leasing.lease_acquire(study=study, worker_id="b")
    before = snapshot()
    with pytest.raises(errors.InvalidSubmission, match="not in this task"):
        leasing.answers_save(lease=mine, answers=answers_for(theirs)[:1])
    assert snapshot() == before


def test_forged_tokens_are_refused():
    study = make_study(n_assignments=1)
    lease = leasing.lease_acquire(study=study, worker_id="w")
    token = leasing.lease_token(lease)
    assert leasing.lease_from_token(token) == lease
    for forged in (token[:-1] + ("A" if token[-1] != "A" else "B"), "abc", "", "x" * 500):
        with pytest.raises(errors.InvalidToken):
            leasing.lease_from_token(forged)


def test_fallback_survives_a_race_lost_between_selection_and_insert(monkeypatch):
    """A competitor takes the first candidate after we listed it: we move on, never share."""
    study = make_study(n_assignments=2)
    rival = Worker.objects.create(external_id="rival")
    real = leasing._candidates

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

    monkeypatch.setattr(leasing, "_candidates", stale)
    monkeypatch.setattr(leasing, "SPREAD", 1)
    lease = leasing.lease_acquire(study=study, worker_id="w", skip_locked=False)
    assert lease.assignment.index == 1
    live = Lease.objects.exclude(status=Lease.Status.EXPIRED)
    assert live.values("assignment").distinct().count() == live.count() == 2


def test_the_constraint_refuses_a_second_live_lease_even_without_the_service():
    study = make_study(n_assignments=1)
    lease = leasing.lease_acquire(study=study, worker_id="w")
    other = Worker.objects.create(external_id="x")
    with pytest.raises(IntegrityError):
        Lease.objects.create(
            study=study, assignment=lease.assignment, worker=other, slot=0,
            leased=lease.leased, expires=lease.expires,
        )  # fmt: skip


def test_autosave_can_clear_a_box_but_submit_cannot():
    study = make_study(n_assignments=1)
    lease = leasing.lease_acquire(study=study, worker_id="w")
    answers = answers_for(lease)
    assert leasing.answers_save(lease=lease, answers=answers[:2]) == 2
    cleared = [{"item": answers[0]["item"], "label": None}]
    assert leasing.answers_save(lease=lease, answers=cleared) == 1
    assert answers[0]["item"] not in leasing.lease_payload(lease)["answers"]
    with pytest.raises(errors.InvalidSubmission, match="label"):
        leasing.lease_submit(lease=lease, answers=[*cleared, *answers[1:]])
