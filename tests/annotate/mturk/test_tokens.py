"""An already-used UniqueRequestToken in every spelling MTurk uses, matched in one place for
publish and bonus, and the reference a bonus's reason carries; the spellings come as MTurk's
exact responses through botocore's Stubber on the real client."""

from __future__ import annotations

import pytest
from botocore.stub import ANY, Stubber

from annotate.mturk.client import MTurkError, get_client
from annotate.mturk.models import Hit, HitAssignment
from annotate.mturk.payments import bonus_token
from annotate.mturk.publish import annotation, request_token
from annotate.mturk.tokens import reference_of, token_already_used, with_reference
from tests.annotate.mturk.stubs import (
    add_hit,
    assignment_id,
    fake_aws,
    hit_body,
    hit_id,
    mturk_settings,
    mturk_study,
    run,
    worker_id,
)

pytestmark = pytest.mark.django_db
TOKEN = "bs-abcdefghijkl-sb-0"

# (TurkErrorCode, message) of an already-used token, as MTurk and its SDKs spell it.
ALREADY_USED = [
    pytest.param(
        "AWS.MechanicalTurk.HitAlreadyExists",
        f"The HIT with ID {hit_id(7)} already exists for UniqueRequestToken {TOKEN}.",
        id="HitAlreadyExists",
    ),
    pytest.param(
        "AWS.MechanicalTurk.HITAlreadyExists",
        f"There is already a HIT with ID {hit_id(7)} for this UniqueRequestToken.",
        id="HITAlreadyExists",
    ),
    pytest.param(
        "",
        f"The value of the UniqueRequestToken {TOKEN} has already been used. (1700000000000)",
        id="token-already-used",
    ),
    pytest.param(
        "",
        f'The idempotency token "{TOKEN}" has already been processed. (1626172412406)',
        id="idempotency-token-processed",
    ),
]
NOT_USED = [
    pytest.param(
        "AWS.MechanicalTurk.QualificationTypeAlreadyExists",
        "You have already created a QualificationType with this name.",
        id="qualification-exists",
    ),
    pytest.param("AWS.MechanicalTurk.InsufficientFunds", "Not enough funds.", id="funds"),
    pytest.param(
        "ParamValidation",
        "Invalid length for parameter UniqueRequestToken, value: 70, valid max length: 64",
        id="our-own-validation",
    ),
    pytest.param(
        "ConnectionClosedError",
        "Connection was closed before we received a valid response",
        id="answer-lost",
    ),
]


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path, settings):
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)


@pytest.mark.parametrize(("code", "message"), ALREADY_USED)
def test_every_spelling_of_an_already_used_token_is_recognised(code, message):
    error = MTurkError(f"MTurk op: {message} [{code or 'RequestError'}]", code or "RequestError")
    assert token_already_used(error)


@pytest.mark.parametrize(("code", "message"), NOT_USED)
def test_other_errors_are_not_taken_for_a_used_token(code, message):
    assert not token_already_used(MTurkError(f"MTurk op: {message}", code))


def test_a_bonus_reason_ends_with_our_reference_and_only_ours_is_read_back():
    token = bonus_token(assignment_id(1))
    reason = with_reference("Careful work  ", token)
    assert reason == f"Careful work [ref {token}]"
    assert reference_of(reason) == token
    assert reference_of("Careful work") == reference_of("[ref x] then more") == ""


def created_error(stub: Stubber, code: str, message: str) -> None:
    stub.add_client_error(
        "create_hit_with_hit_type",
        service_error_code="RequestError",
        service_message=message,
        modeled_fields={"TurkErrorCode": code} if code else None,
    )


@pytest.mark.parametrize(("code", "message"), ALREADY_USED)
def test_publish_records_the_hit_its_token_created_in_every_spelling(code, message):
    study = mturk_study(n_assignments=3)
    token = request_token(study, sandbox=True, index=0)
    message = message.replace(TOKEN, token)
    with Stubber(get_client()) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "3TYPE0000000000000000000000001"})
        created_error(stub, code, message)
        if hit_id(7) not in message:  # no HIT id in the answer: found by our annotation
            others = [hit_body(HITId=hit_id(n), RequesterAnnotation=f"x {n}") for n in (3, 4)]
            mine = hit_body(HITId=hit_id(7), RequesterAnnotation=annotation(study, token))
            stub.add_response("list_hits", {"HITs": others, "NextToken": "p2"}, {"MaxResults": 100})
            stub.add_response("list_hits", {"HITs": [mine]}, {"MaxResults": 100, "NextToken": "p2"})
        stub.add_response(
            "get_hit", {"HIT": hit_body(HITId=hit_id(7), MaxAssignments=3)}, {"HITId": hit_id(7)}
        )
        out = run("publish", "--study", study.name, "--reward", "0.50", "--yes")
        stub.assert_no_pending_responses()
    hit = Hit.objects.get(study=study)
    assert (hit.hit_id, hit.state, hit.request_token) == (hit_id(7), Hit.State.PUBLISHED, token)
    assert f"recorded HIT {hit_id(7)} created by an earlier, interrupted run" in out


@pytest.mark.parametrize(
    ("code", "message"),
    [p for p in ALREADY_USED if p.id in ("token-already-used", "idempotency-token-processed")],
)
def test_a_bonus_whose_token_was_used_is_recorded_not_failed_in_every_spelling(code, message):
    study = mturk_study(n_assignments=1)
    row = HitAssignment.objects.create(
        hit=add_hit(study, 0, size=1),
        assignment_id=assignment_id(1),
        worker_id=worker_id(1),
        mturk_status=HitAssignment.MTurkStatus.SUBMITTED,
    )
    with Stubber(get_client()) as stub:
        stub.add_response(
            "list_bonus_payments", {"BonusPayments": []}, {"AssignmentId": ANY, "MaxResults": 100}
        )
        stub.add_client_error(
            "send_bonus",
            service_error_code="RequestError",
            service_message=message.replace(TOKEN, bonus_token(row.assignment_id)),
            modeled_fields={"TurkErrorCode": code} if code else None,
        )
        out = run(
            "bonus",
            "--study",
            study.name,
            "--amount",
            "0.10",
            "--reason",
            "r",
            "--worker",
            worker_id(1),
            "--yes",
        )
        stub.assert_no_pending_responses()
    assert "bonus: 1 done, 0 failed" in out and "MTurk had this bonus already" in out
    row.refresh_from_db()
    assert row.bonused is not None and row.bonus_intended is not None
