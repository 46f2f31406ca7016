"""Database constraints that the leasing and design code rely on."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.models import Answer, Event, Lease, Worker
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


def _lease(study, assignment, worker, slot=0, status=Lease.Status.ACTIVE):
    now = timezone.now()
    return Lease.objects.create(
        study=study,
        assignment=assignment,
        worker=worker,
        slot=slot,
        status=status,
        leased=now,
        expires=now + dt.timedelta(minutes=5),
    )


def test_one_live_lease_per_assignment_but_expired_ones_may_pile_up():
    study = make_study(n_assignments=1)
    a = study.assignments.get()
    w1, w2, w3 = (Worker.objects.create(external_id=f"w{i}") for i in range(3))
    _lease(study, a, w1, status=Lease.Status.EXPIRED)
    _lease(study, a, w2)
    with pytest.raises(IntegrityError), transaction.atomic():
        _lease(study, a, w3)


def test_a_worker_cannot_hold_the_same_slot_twice():
    study = make_study(n_assignments=2)
    a1, a2 = study.assignments.all()
    w = Worker.objects.create(external_id="w")
    _lease(study, a1, w, slot=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        _lease(study, a2, w, slot=0)


def test_answer_labels_are_checked_by_the_database():
    study = make_study(n_assignments=1)
    a = study.assignments.get()
    lease = _lease(study, a, Worker.objects.create(external_id="w"))
    item = a.items.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Answer.objects.create(lease=lease, item=item, label="x")
    Answer.objects.create(lease=lease, item=item, label="?")


def test_events_are_append_only():
    study = make_study(n_assignments=1)
    event = Event.objects.create(study=study, kind=Event.Kind.OPENED)
    event.data = {"changed": True}
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()
