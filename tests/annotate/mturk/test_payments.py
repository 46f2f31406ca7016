"""Approve, reject, bonus, expire, extend and status under the Stubber: only work submitted
here is paid, passing-only follows the exclusion rule, no bonus is paid twice, one failure
does not stop the rest."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from botocore.stub import Stubber
from django.core.management.base import CommandError
from django.utils import timezone

from annotate.mturk.client import get_client
from annotate.mturk.hits import EXPIRE_AT
from annotate.mturk.models import Hit, HitAssignment, MTurkCall
from annotate.mturk.payments import bonus_token, passing_workers
from tests.annotate.mturk.stubs import (
    FAIL,
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
SUBMITTED = HitAssignment.MTurkStatus.SUBMITTED
APPROVED = HitAssignment.MTurkStatus.APPROVED


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path, settings):
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)


@pytest.fixture
def paid_study():
    """Workers 1 and 2 pass the attention check, 3 fails it, 4 is unknown here; all Submitted."""
    study = mturk_study(n_assignments=6)
    hit = add_hit(study, 0, size=6)
    bind(study, hit, 1, mturk_status=SUBMITTED)
    bind(study, hit, 2, mturk_status=SUBMITTED)
    bind(study, hit, 3, mturk_status=SUBMITTED, offset=FAIL)
    HitAssignment.objects.create(
        hit=hit, assignment_id=assignment_id(4), worker_id=worker_id(4), mturk_status=SUBMITTED
    )
    return study


def expect_approve(stub: Stubber, n: int, **extra) -> None:
    stub.add_response("approve_assignment", {}, {"AssignmentId": assignment_id(n), **extra})


def expect_no_bonus_yet(stub: Stubber, n: int) -> None:
    """The lookup before a bonus: MTurk lists no bonus to assignment ``n``."""
    stub.add_response(
        "list_bonus_payments",
        {"NumResults": 0, "BonusPayments": []},
        {"AssignmentId": assignment_id(n), "MaxResults": 100},
    )


def statuses() -> dict[str, str]:
    return dict(HitAssignment.objects.values_list("assignment_id", "mturk_status"))


def test_the_exclusion_rule_decides_who_passes(paid_study):
    assert passing_workers(study=paid_study) == {worker_id(1), worker_id(2)}


def test_approve_pays_work_submitted_here_and_never_an_unknown_assignment(paid_study):
    with Stubber(get_client()) as stub:
        for n in (1, 2, 3):
            expect_approve(stub, n, RequesterFeedback="Thanks!")
        out = run("approve", "--study", paid_study.name, "--feedback", "Thanks!", "--yes")
        stub.assert_no_pending_responses()
    assert "Mode: SANDBOX" in out
    assert "3 assignments: $1.50 to workers + $0.30 MTurk fees = $1.80" in out
    assert f"skipped {assignment_id(4)} (worker {worker_id(4)}): no submitted work here" in out
    assert statuses()[assignment_id(4)] == SUBMITTED
    assert [statuses()[assignment_id(n)] for n in (1, 2, 3)] == [APPROVED] * 3
    row = HitAssignment.objects.get(assignment_id=assignment_id(1))
    assert row.reviewed is not None and row.feedback == "Thanks!"


def test_approve_passing_only_skips_a_worker_who_failed_the_attention_check(paid_study):
    with Stubber(get_client()) as stub:
        expect_approve(stub, 1)
        expect_approve(stub, 2)
        out = run("approve", "--study", paid_study.name, "--passing-only", "--yes")
        stub.assert_no_pending_responses()
    assert f"skipped {assignment_id(3)} (worker {worker_id(3)}): fails the exclusion rule" in out
    assert statuses()[assignment_id(3)] == SUBMITTED


def test_include_unknown_approves_an_assignment_with_no_work_here(paid_study):
    HitAssignment.objects.exclude(assignment_id=assignment_id(4)).update(mturk_status=APPROVED)
    with Stubber(get_client()) as stub:
        expect_approve(stub, 4)
        run("approve", "--study", paid_study.name, "--include-unknown", "--yes")
        stub.assert_no_pending_responses()
    assert statuses()[assignment_id(4)] == APPROVED


def test_one_failed_approval_does_not_stop_the_others_and_the_exit_is_non_zero(paid_study):
    with Stubber(get_client()) as stub:
        stub.add_client_error(
            "approve_assignment",
            service_error_code="RequestError",
            service_message="This operation can be called with a status of: Submitted",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.InvalidAssignmentState"},
        )
        stub.add_response(  # the refusal is checked: still Submitted, so a real failure
            "get_assignment",
            {"Assignment": assignment_body(1, paid_study.hits.get())},
            {"AssignmentId": assignment_id(1)},
        )
        expect_approve(stub, 2)
        expect_approve(stub, 3)
        with pytest.raises(CommandError, match="1 of 3 approve calls failed"):
            run("approve", "--study", paid_study.name, "--yes")
        stub.assert_no_pending_responses()
    assert statuses()[assignment_id(1)] == SUBMITTED
    assert statuses()[assignment_id(2)] == statuses()[assignment_id(3)] == APPROVED
    assert MTurkCall.objects.filter(ok=False).count() == 1


@pytest.mark.parametrize(
    ("auto", "note"),
    [
        (True, "auto-approved by MTurk; recorded as approved"),
        (False, "MTurk had it Approved already; recorded"),  # an earlier answer was lost
    ],
)
def test_an_approval_mturk_refuses_because_the_work_is_approved_counts_as_done(
    paid_study, auto, note
):
    hit = paid_study.hits.get()
    submitted = timezone.now() - dt.timedelta(days=3, minutes=5)
    auto_at = submitted + dt.timedelta(days=3)
    approved = auto_at if auto else auto_at - dt.timedelta(days=1)
    with Stubber(get_client()) as stub:
        stub.add_client_error(
            "approve_assignment",
            service_error_code="RequestError",
            service_message="This operation can be called with a status of: Submitted "
            "(1700000000000)",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.InvalidAssignmentState"},
            expected_params={"AssignmentId": assignment_id(1)},
        )
        body = assignment_body(1, hit, "Approved", SubmitTime=submitted, AutoApprovalTime=auto_at)
        body["ApprovalTime"] = approved
        stub.add_response(
            "get_assignment",
            {"Assignment": body, "HIT": hit_body(hit)},
            {"AssignmentId": assignment_id(1)},
        )
        expect_approve(stub, 2)
        expect_approve(stub, 3)
        out = run("approve", "--study", paid_study.name, "--yes")
        stub.assert_no_pending_responses()
    assert "approve: 3 done, 0 failed" in out and f"{assignment_id(1)}: {note}" in out
    row = HitAssignment.objects.get(assignment_id=assignment_id(1))
    assert row.mturk_status == APPROVED and row.reviewed == approved


def test_approve_without_yes_off_a_terminal_refuses_and_spends_nothing(paid_study):
    with pytest.raises(CommandError, match="pass --yes"):
        run("approve", "--study", paid_study.name)
    assert not MTurkCall.objects.exists()


def test_reject_sends_the_reason_and_refuses_unknown_ids(paid_study):
    with pytest.raises(CommandError, match="not assignments of study .* 3NOPE"):
        run("reject", "--study", paid_study.name, "--assignment", "3NOPE", "--reason", "x", "--yes")
    with pytest.raises(CommandError, match="--reason"):
        run("reject", "--study", paid_study.name, "--assignment", assignment_id(3), "--yes")
    with pytest.raises(CommandError, match="must say why"):
        run(
            "reject",
            "--study",
            paid_study.name,
            "--assignment",
            assignment_id(3),
            "--reason",
            "  ",
            "--yes",
        )
    assert not MTurkCall.objects.exists()
    with Stubber(get_client()) as stub:
        stub.add_response(
            "reject_assignment",
            {},
            {
                "AssignmentId": assignment_id(3),
                "RequesterFeedback": "The attention check was answered wrongly.",
            },
        )
        run(
            "reject",
            "--study",
            paid_study.name,
            "--assignment",
            assignment_id(3),
            "--reason",
            "The attention check was answered wrongly.",
            "--yes",
        )
        stub.assert_no_pending_responses()
    row = HitAssignment.objects.get(assignment_id=assignment_id(3))
    assert row.mturk_status == "Rejected" and row.feedback.startswith("The attention")


def test_a_bonus_is_paid_once_per_assignment_with_a_stored_token(paid_study):
    expected = {
        "WorkerId": worker_id(1),
        "BonusAmount": "0.25",
        "AssignmentId": assignment_id(1),
        "Reason": f"Careful work [ref {bonus_token(assignment_id(1))}]",
        "UniqueRequestToken": bonus_token(assignment_id(1)),
    }
    with Stubber(get_client()) as stub:
        expect_no_bonus_yet(stub, 1)
        stub.add_response("send_bonus", {}, expected)
        out = run(
            "bonus",
            "--study",
            paid_study.name,
            "--amount",
            "0.25",
            "--reason",
            "Careful work",
            "--worker",
            worker_id(1),
            "--yes",
        )
        stub.assert_no_pending_responses()
    assert "1 assignment: $0.25 to workers + $0.05 MTurk fees = $0.30" in out
    row = HitAssignment.objects.get(assignment_id=assignment_id(1))
    assert (row.bonus, row.bonus_token) == (Decimal("0.25"), expected["UniqueRequestToken"])
    assert row.bonused is not None
    out = run(
        "bonus",
        "--study",
        paid_study.name,
        "--amount",
        "0.25",
        "--reason",
        "Careful work",
        "--worker",
        worker_id(1),
        "--yes",
    )  # no Stubber: no call allowed
    assert "already bonused $0.25" in out and "Nothing to bonus" in out
    assert MTurkCall.objects.filter(operation="send_bonus").count() == 1


def test_a_bonus_mturk_already_has_under_our_token_is_recorded_as_done(paid_study):
    with Stubber(get_client()) as stub:
        expect_no_bonus_yet(stub, 2)
        stub.add_client_error(
            "send_bonus",
            service_error_code="RequestError",
            service_message=f'The idempotency token "{bonus_token(assignment_id(2))}" has '
            "already been processed. (1700000000000)",
        )
        out = run(
            "bonus",
            "--study",
            paid_study.name,
            "--amount",
            "0.10",
            "--reason",
            "r",
            "--worker",
            worker_id(2),
            "--yes",
        )
        stub.assert_no_pending_responses()
    assert "MTurk had this bonus already; recorded" in out
    assert HitAssignment.objects.get(assignment_id=assignment_id(2)).bonused is not None


def test_bonus_needs_workers_or_all_approved():
    study = mturk_study(n_assignments=1)
    with pytest.raises(CommandError, match="one of the arguments --worker --all-approved"):
        run("bonus", "--study", study.name, "--amount", "0.10", "--reason", "r", "--yes")


def test_expire_sets_a_past_expiry_on_every_hit():
    study = mturk_study(n_assignments=4)
    hits = [add_hit(study, 0, size=2), add_hit(study, 1, size=2)]
    with Stubber(get_client()) as stub:
        for hit in hits:
            stub.add_response(
                "update_expiration_for_hit", {}, {"HITId": hit.hit_id, "ExpireAt": EXPIRE_AT}
            )
        out = run("expire", "--study", study.name)
        stub.assert_no_pending_responses()
    assert "expire: 2 done, 0 failed" in out
    assert all(h.expiration is not None for h in Hit.objects.all())


def test_extend_refuses_to_grow_a_hit_past_nine_and_adds_with_a_token():
    study = mturk_study(n_assignments=12)
    hit = add_hit(study, 0, size=8)
    with pytest.raises(CommandError, match="fewer than 10 assignments grow to 10 or more"):
        run("extend", "--study", study.name, "--assignments", "2", "--yes")
    with Stubber(get_client()) as stub:
        stub.add_response("get_hit", {"HIT": hit_body(hit)}, {"HITId": hit.hit_id})  # 8 so far
        stub.add_response(
            "create_additional_assignments_for_hit",
            {},
            {
                "HITId": hit.hit_id,
                "NumberOfAdditionalAssignments": 1,
                "UniqueRequestToken": f"bs-x-{hit.hit_id}-9",
            },
        )
        out = run("extend", "--study", study.name, "--assignments", "1", "--yes")
        stub.assert_no_pending_responses()
    assert "1 assignment: $0.50 to workers + $0.10 MTurk fees = $0.60" in out
    hit.refresh_from_db()
    assert hit.max_assignments == 9


def test_status_shows_hits_states_spend_and_balance(paid_study):
    HitAssignment.objects.filter(assignment_id=assignment_id(1)).update(
        mturk_status=APPROVED, bonus=Decimal("0.25"), bonused="2026-01-01T00:00:00Z"
    )
    with Stubber(get_client()) as stub:
        stub.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
        out = run("status", "--study", paid_study.name)
    assert "Mode: SANDBOX" in out and "1 HITs" in out
    assert "Accepted 0, Submitted 3, Approved 1, Rejected 0" in out
    assert "spent $0.90: 1 approved ($0.50 + $0.10 fees), 1 bonuses ($0.25 + $0.05 fees)" in out
    assert "balance: $10000.00 available" in out
    assert f"unknown here: assignment {assignment_id(4)}" in out


def test_extending_a_large_hit_is_priced_at_forty_percent():
    study = mturk_study(n_assignments=14)
    add_hit(study, 0, size=12)
    out = run("extend", "--study", study.name, "--assignments", "1", stdin="n\n")
    assert "1 assignment: $0.50 to workers + $0.20 MTurk fees = $0.70" in out
    assert "Cancelled; nothing was done." in out and not MTurkCall.objects.exists()
