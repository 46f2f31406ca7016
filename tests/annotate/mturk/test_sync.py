"""``mturk sync`` under the Stubber: paging through assignments, upserting them, and keeping
and reporting every disagreement between MTurk and Blindspot."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber
from django.core.management.base import CommandError

from annotate.models import Lease
from annotate.mturk.client import get_client
from annotate.mturk.models import HitAssignment, MTurkCall
from annotate.mturk.reconcile import STATUSES, study_problems
from tests.annotate.mturk.stubs import (
    add_hit,
    assignment_body,
    assignment_id,
    bind,
    fake_aws,
    hit_body,
    mturk_settings,
    mturk_study,
    run,
    worker_id,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path, settings):
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)


def expect_pages(stub: Stubber, hit, pages: list[list[dict]]) -> None:
    """ListAssignmentsForHIT answered in ``pages``, linked by NextToken."""
    for i, assignments in enumerate(pages):
        params = {"HITId": hit.hit_id, "AssignmentStatuses": STATUSES, "MaxResults": 100}
        if i:
            params["NextToken"] = f"token-{i}"
        body = {"NumResults": len(assignments), "Assignments": assignments}
        if i + 1 < len(pages):
            body["NextToken"] = f"token-{i + 1}"
        stub.add_response("list_assignments_for_hit", body, params)


def test_sync_pages_through_every_assignment_and_reports_both_kinds_of_disagreement():
    study = mturk_study(n_assignments=6)
    hit = add_hit(study, 0, size=6)
    ok = bind(study, hit, 1)  # submitted here and on MTurk
    lost = bind(study, hit, 2)  # submitted here, MTurk never got the externalSubmit
    active = bind(study, hit, 3, submit=False)  # still working here, yet Submitted on MTurk
    with Stubber(get_client()) as stub:
        stub.add_response(
            "get_hit",
            {
                "HIT": hit_body(
                    hit,
                    HITStatus="Unassignable",
                    NumberOfAssignmentsPending=1,
                    NumberOfAssignmentsCompleted=3,
                )
            },
            {"HITId": hit.hit_id},
        )
        expect_pages(
            stub,
            hit,
            [
                [assignment_body(1, hit), assignment_body(3, hit)],
                [assignment_body(4, hit)],  # a worker we never saw
                [assignment_body(5, hit, "Approved")],  # never seen here either, already approved
            ],
        )
        out = run("sync", "--study", study.name)
        stub.assert_no_pending_responses()

    ok.refresh_from_db()
    assert ok.mturk_status == "Submitted" and ok.submitted is not None
    stranger = HitAssignment.objects.get(assignment_id=assignment_id(4))
    assert stranger.lease is None and stranger.worker_id == worker_id(4)
    assert HitAssignment.objects.get(assignment_id=assignment_id(5)).reviewed is not None
    hit.refresh_from_db()
    assert hit.status == "Unassignable" and hit.synced is not None

    problems = study_problems(study=study)
    assert {r.assignment_id for r in problems.unknown} == {assignment_id(3), assignment_id(4)}
    assert [r.assignment_id for r in problems.lost_submits] == [assignment_id(2)]
    assert f"lease {Lease.Status.ACTIVE} here: assignment {assignment_id(3)}" in out
    assert f"unknown here: assignment {assignment_id(4)}" in out
    assert f"submitted here, not on MTurk: assignment {assignment_id(2)}" in out
    lost.lease.refresh_from_db()
    assert f"completion code {lost.lease.completion_code}" in out
    assert "4 assignments listed by MTurk (2 new here, 2 updated)" in out
    assert "Accepted 1, Submitted 3, Approved 1, Rejected 0" in out
    assert active.lease.status == Lease.Status.ACTIVE  # nothing here was changed or dropped
    assert HitAssignment.objects.count() == 5
    assert MTurkCall.objects.filter(operation="list_assignments_for_hit").count() == 3


def test_a_second_sync_changes_nothing_and_keeps_the_problem_rows():
    study = mturk_study(n_assignments=3)
    hit = add_hit(study, 0, size=3)
    for _ in range(2):
        with Stubber(get_client()) as stub:
            stub.add_response("get_hit", {"HIT": hit_body(hit)}, {"HITId": hit.hit_id})
            expect_pages(stub, hit, [[assignment_body(4, hit)]])
            run("sync", "--study", study.name)
    assert HitAssignment.objects.filter(assignment_id=assignment_id(4)).count() == 1


def test_a_failing_hit_does_not_stop_the_others_and_the_exit_is_non_zero():
    study = mturk_study(n_assignments=4)
    first, second = add_hit(study, 0, size=2), add_hit(study, 1, size=2)
    with Stubber(get_client()) as stub:
        stub.add_client_error(
            "get_hit",
            service_error_code="RequestError",
            service_message=f"Hit {first.hit_id} does not exist.",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HITDoesNotExist"},
        )
        stub.add_response("get_hit", {"HIT": hit_body(second)}, {"HITId": second.hit_id})
        expect_pages(stub, second, [[assignment_body(1, second)]])
        with pytest.raises(CommandError, match="1 HIT\\(s\\) could not be synced"):
            run("sync", "--study", study.name)
        stub.assert_no_pending_responses()
    assert HitAssignment.objects.get().hit == second


def test_sync_binds_a_lease_the_worker_page_made_but_never_recorded():
    study = mturk_study(n_assignments=2)
    hit = add_hit(study, 0, size=2)
    row = bind(study, hit, 1)
    lease = row.lease
    row.delete()  # as if the page crashed after leasing
    with Stubber(get_client()) as stub:
        stub.add_response("get_hit", {"HIT": hit_body(hit)}, {"HITId": hit.hit_id})
        expect_pages(stub, hit, [[assignment_body(1, hit)]])
        out = run("sync", "--study", study.name)
    assert HitAssignment.objects.get().lease == lease
    assert "no disagreements" in out
