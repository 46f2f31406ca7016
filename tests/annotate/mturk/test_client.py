"""The MTurk client: mode and endpoint, retries with backoff, clear errors, the audit row."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.stub import Stubber

from annotate.mturk import client as mturk
from annotate.mturk.client import MTurkError, build_client, call, get_client, pages
from annotate.mturk.models import MTurkCall
from tests.annotate.mturk.stubs import fake_aws, hit_id, mturk_settings, mturk_study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path, settings):
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)


def throttled(stub: Stubber, operation: str) -> None:
    stub.add_client_error(
        operation,
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
    )


def test_the_client_is_sandbox_by_default_in_us_east_1_without_botocore_retries():
    client = build_client()
    assert client.meta.endpoint_url == mturk.SANDBOX_ENDPOINT
    assert client.meta.region_name == "us-east-1"
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert mturk.worker_site() == "https://workersandbox.mturk.com"
    assert mturk.preview_url("G1") == "https://workersandbox.mturk.com/mturk/preview?groupId=G1"


def test_live_mode_and_an_endpoint_override(settings):
    mturk_settings(settings, sandbox=False)
    assert build_client().meta.endpoint_url == mturk.LIVE_ENDPOINT
    assert mturk.worker_site() == "https://www.mturk.com" and mturk.mode_label() == "LIVE"
    mturk_settings(settings, endpoint="http://127.0.0.1:8765")
    assert build_client().meta.endpoint_url == "http://127.0.0.1:8765"
    assert mturk.is_local_endpoint()


def test_get_client_is_one_client_per_endpoint(settings):
    assert get_client() is get_client()
    mturk_settings(settings, endpoint="http://127.0.0.1:8765")
    assert get_client().meta.endpoint_url == "http://127.0.0.1:8765"


def test_throttling_is_retried_with_jittered_backoff_and_counted():
    client, study, sleeps = get_client(), mturk_study(), []
    with Stubber(client) as stub:
        throttled(stub, "get_account_balance")
        throttled(stub, "get_account_balance")
        stub.add_response("get_account_balance", {"AvailableBalance": "10000.00"})
        response = call(client, "get_account_balance", study=study, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert response["AvailableBalance"] == "10000.00"
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= mturk.BASE_DELAY_S and 0 <= sleeps[1] <= 2 * mturk.BASE_DELAY_S
    row = MTurkCall.objects.get()
    assert (row.operation, row.ok, row.attempts, row.study, row.sandbox) == (
        "get_account_balance",
        True,
        3,
        study,
        True,
    )
    assert row.result == {"AvailableBalance": "10000.00"}


def test_service_fault_is_retried_then_given_up_with_a_clear_error():
    client, sleeps = get_client(), []
    with Stubber(client) as stub:
        stub.add_client_error("get_hit", service_error_code="ServiceFault", http_status_code=500)
        stub.add_response("get_hit", {"HIT": {"HITId": hit_id(1), "HITStatus": "Assignable"}})
        assert call(client, "get_hit", HITId=hit_id(1), sleep=sleeps.append)["HIT"]["HITId"]
        for _ in range(mturk.MAX_ATTEMPTS):
            stub.add_client_error(
                "get_hit",
                service_error_code="ServiceFault",
                service_message="try again",
                http_status_code=500,
            )
        with pytest.raises(MTurkError) as caught:
            call(client, "get_hit", HITId=hit_id(1), sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert caught.value.code == "ServiceFault" and "try again" in str(caught.value)
    assert len(sleeps) == 1 + mturk.MAX_ATTEMPTS - 1
    failed = MTurkCall.objects.get(ok=False)
    assert failed.attempts == mturk.MAX_ATTEMPTS and failed.error_code == "ServiceFault"


def test_a_request_error_is_not_retried_and_names_the_turk_error_code():
    client, sleeps = get_client(), []
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_hit",
            service_error_code="RequestError",
            service_message="Hit 3X does not exist. (1700000000000)",
            http_status_code=400,
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HITDoesNotExist"},
        )
        with pytest.raises(MTurkError) as caught:
            call(client, "get_hit", HITId="3X", sleep=sleeps.append)
    error = caught.value
    assert error.code == "AWS.MechanicalTurk.HITDoesNotExist" and not sleeps
    assert str(error) == (
        "MTurk get_hit: Hit 3X does not exist. (1700000000000) [AWS.MechanicalTurk.HITDoesNotExist]"
    )
    row = MTurkCall.objects.get()
    assert not row.ok and row.error_code == error.code and row.message == str(error)


def test_rejecting_without_feedback_is_impossible_even_under_the_stubber():
    client = get_client()
    with Stubber(client) as stub:
        stub.add_response("reject_assignment", {})  # would be returned if the request were valid
        with pytest.raises(MTurkError) as caught:
            call(client, "reject_assignment", AssignmentId="3ASG1")
        with pytest.raises(AssertionError):
            stub.assert_no_pending_responses()  # never sent: botocore refused it first
    assert caught.value.code == "ParamValidation"
    assert "RequesterFeedback" in str(caught.value) and "\n" not in str(caught.value)
    assert MTurkCall.objects.get().ok is False


def test_missing_credentials_are_a_clear_error(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(MTurkError) as caught:
        call(build_client(), "get_account_balance")
    assert caught.value.code == "NoCredentials" and "AWS_ACCESS_KEY_ID" in str(caught.value)


def test_an_unreachable_endpoint_is_a_clear_error(settings):
    mturk_settings(settings, endpoint="http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(MTurkError) as caught:
        call(build_client(), "get_account_balance", sleep=lambda s: None)
    assert caught.value.code == "EndpointConnection"
    assert "http://127.0.0.1:9" in str(caught.value)


def test_the_audit_shortens_the_question_and_stores_json_safe_params():
    client = get_client()
    question = "<ExternalQuestion>" + "x" * 500 + "</ExternalQuestion>"
    with Stubber(client) as stub:
        stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": hit_id(1)}})
        stub.add_response("update_expiration_for_hit", {})
        call(
            client,
            "create_hit_with_hit_type",
            HITTypeId="3T",
            LifetimeInSeconds=60,
            Question=question,
        )
        call(
            client,
            "update_expiration_for_hit",
            HITId=hit_id(1),
            ExpireAt=dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
        )
    create, expire = MTurkCall.objects.order_by("id")
    assert create.params["Question"].startswith("<ExternalQuestion>xxx")
    assert len(create.params["Question"]) < 200 and "(537 chars)" in create.params["Question"]
    assert create.result == {"HIT": {"HITId": hit_id(1)}}
    assert expire.params["ExpireAt"] == "2015-01-01T00:00:00+00:00"


def test_pages_follow_next_token_and_a_throttled_page_resumes_where_it_was():
    client, sleeps = get_client(), []
    base = {"HITId": hit_id(1), "AssignmentStatuses": ["Submitted"], "MaxResults": 100}
    with Stubber(client) as stub:
        stub.add_response(
            "list_assignments_for_hit",
            {"NextToken": "p2", "NumResults": 0, "Assignments": []},
            base,
        )
        throttled(stub, "list_assignments_for_hit")
        stub.add_response(
            "list_assignments_for_hit",
            {"NumResults": 0, "Assignments": []},
            {**base, "NextToken": "p2"},
        )
        got = list(
            pages(
                client,
                "list_assignments_for_hit",
                HITId=hit_id(1),
                AssignmentStatuses=["Submitted"],
                sleep=sleeps.append,
            )
        )
        stub.assert_no_pending_responses()
    assert len(got) == 2 and len(sleeps) == 1
    first, second = MTurkCall.objects.order_by("id")
    assert "NextToken" not in first.params and second.params["NextToken"] == "p2"
    assert second.attempts == 2
