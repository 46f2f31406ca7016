"""Many workers leasing at the same instant, on PostgreSQL: no shared assignment, no excess.

Threads each open their own connection and wait at a barrier, then lease at once. Both the
SKIP LOCKED path and the constraint-only fallback are exercised on the same server.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from annotate import errors
from annotate.models import Answer, Lease, Study
from annotate.work.answers import lease_submit
from annotate.work.leases import lease_acquire
from tests.annotate.factories import make_set, make_study

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_at_once(n: int, fn) -> list:
    """Call ``fn(i)`` in n threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("skip_locked", [True, False], ids=["skip-locked", "fallback"])
def test_fifty_workers_at_once_never_share_an_assignment(skip_locked):
    # 40 assignments for 50 workers: 40 get one each, 10 are told the study is full.
    study = make_study([make_set(200)], n_assignments=40, size=5)
    study = Study.objects.get(pk=study.pk)

    def lease(i: int) -> int:
        return lease_acquire(
            study=study, worker_id=f"worker-{i}", skip_locked=skip_locked
        ).assignment_id

    results = run_at_once(50, lease)
    unexpected = [r for r in results if isinstance(r, Exception)]
    assigned = [r for r in results if isinstance(r, int)]
    assert all(isinstance(e, errors.StudyFull) for e in unexpected), unexpected
    assert len(assigned) == 40 and len(set(assigned)) == 40
    live = Lease.objects.filter(study=study).exclude(status=Lease.Status.EXPIRED)
    assert live.count() == 40
    assert max(Counter(live.values_list("worker_id", flat=True)).values()) == 1


@pytest.mark.parametrize("skip_locked", [True, False], ids=["skip-locked", "fallback"])
def test_one_worker_racing_itself_never_exceeds_the_limit(skip_locked):
    study = make_study([make_set(100)], n_assignments=20, size=5, assignments_per_worker=2)
    study = Study.objects.get(pk=study.pk)
    results = run_at_once(
        10,
        lambda i: (
            lease_acquire(
                study=study, worker_id="same-person", attempt="one-tab", skip_locked=skip_locked
            ).pk
        ),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(set(results)) == 1  # every request got the one active lease back
    assert Lease.objects.filter(study=study).count() == 1


def test_concurrent_submits_of_one_lease_store_one_answer_set():
    study = make_study(n_assignments=1, size=5)
    lease = lease_acquire(study=study, worker_id="w")
    answers = [{"item": i.key, "label": "2", "ms": 100} for i in lease.assignment.items.all()]
    codes = run_at_once(
        10,
        lambda i: lease_submit(
            lease=Lease.objects.select_related("study", "assignment").get(pk=lease.pk),
            answers=answers,
        ),
    )
    assert set(codes) == {lease.completion_code}
    assert lease.answers.count() == 5


@pytest.mark.parametrize("skip_locked", [True, False], ids=["skip-locked", "fallback"])
def test_workers_each_racing_themselves_stay_within_the_limit(skip_locked):
    # 16 people, 3 tabs each (one browser: the same attempt), all leasing and submitting in a
    # loop; each may do 2 assignments.
    study = make_study([make_set(300)], n_assignments=60, size=5, assignments_per_worker=2)
    study = Study.objects.get(pk=study.pk)

    def tab(i: int) -> str:
        worker_id = f"person-{i // 3}"
        while True:
            try:
                lease = lease_acquire(
                    study=study, worker_id=worker_id, attempt=worker_id, skip_locked=skip_locked
                )
            except errors.AlreadyParticipated:
                return "done"
            items = lease.assignment.items.values_list("key", flat=True)
            answers = [{"item": key, "label": "5", "ms": 100} for key in items]
            lease_submit(lease=lease, answers=answers)

    results = run_at_once(48, tab)
    assert results == ["done"] * 48, [r for r in results if r != "done"]
    live = Lease.objects.filter(study=study).exclude(status=Lease.Status.EXPIRED)
    per_worker = Counter(live.values_list("worker_id", flat=True))
    assert len(per_worker) == 16 and set(per_worker.values()) == {2}
    assert live.values("assignment").distinct().count() == live.count() == 32
    assert not live.filter(status=Lease.Status.ACTIVE).exists()
    assert Answer.objects.count() == 32 * 5  # one answer set per lease, however many tabs
