"""``mturk publish`` under botocore's Stubber: the HIT type, the HITs, qualifications, cost,
confirmation, idempotency tokens and the errors an operator sees."""

from __future__ import annotations

from decimal import Decimal

import pytest
from botocore.stub import ANY, Stubber
from django.core.management.base import CommandError

from annotate.models import Study
from annotate.mturk import fees
from annotate.mturk.client import CLOSURE_NOTICE, LIVE_ENDPOINT, get_client
from annotate.mturk.models import Hit, MTurkCall, MTurkQualification
from annotate.mturk.publish import (
    DEFAULT_KEYWORDS,
    external_question,
    parse_duration,
    request_token,
    study_capacity,
)
from annotate.mturk.qualifications import parse_requirement
from tests.annotate.mturk.stubs import (
    PUBLIC,
    add_hit,
    bind,
    fake_aws,
    hit_body,
    hit_id,
    mturk_settings,
    mturk_study,
    run,
)

pytestmark = pytest.mark.django_db
QUAL = "3QUAL000000000000000000000001"
LOCAL_ENDPOINT = "http://127.0.0.1:9"  # a local endpoint, never reached by these tests


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path, settings):
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)


def expect_hit_type(stub: Stubber, requirements: list | None = None, **fields) -> None:
    params = {
        "AutoApprovalDelayInSeconds": 3 * 86400,
        "AssignmentDurationInSeconds": 1800,
        "Reward": "0.50",
        "Title": "Which digit is this?",
        "Keywords": DEFAULT_KEYWORDS,
        "Description": "Say which digit each of 5 small images shows.",
        **fields,
    }
    if requirements:
        params["QualificationRequirements"] = requirements
    stub.add_response("create_hit_type", {"HITTypeId": "3TYPE0000000000000000000000001"}, params)


def expect_hit(stub: Stubber, study: Study, index: int, size: int, **fields) -> None:
    token = request_token(study, sandbox=True, index=index)
    params = {
        "HITTypeId": "3TYPE0000000000000000000000001",
        "MaxAssignments": size,
        "LifetimeInSeconds": 3 * 86400,
        "Question": external_question(f"{PUBLIC}/s/{study.key}/"),
        "RequesterAnnotation": f"{study.name} {token}",
        "UniqueRequestToken": token,
        **fields,
    }
    body = hit_body(HITId=hit_id(index + 1), MaxAssignments=size)
    stub.add_response("create_hit_with_hit_type", {"HIT": body}, params)


def test_publish_creates_one_hit_type_and_hits_of_at_most_nine():
    study = mturk_study(n_assignments=12)
    client = get_client()
    with Stubber(client) as stub:
        expect_hit_type(stub)
        expect_hit(stub, study, 0, 9)
        expect_hit(stub, study, 1, 3)
        out = run("publish", "--study", study.name, "--reward", "0.50", "--yes")
        stub.assert_no_pending_responses()
    hits = list(Hit.objects.filter(study=study).order_by("index"))
    assert [(h.hit_id, h.max_assignments, h.sandbox) for h in hits] == [
        (hit_id(1), 9, True),
        (hit_id(2), 3, True),
    ]
    assert hits[0].request_token == f"bs-{study.key[:12]}-sb-0" and hits[0].reward == Decimal(
        "0.50"
    )
    assert "Mode: SANDBOX" in out and "costs nothing real" in out
    assert "HITs: 2 (9, 3 assignments)" in out
    assert "12 assignments: $6.00 to workers + $1.20 MTurk fees = $7.20" in out
    assert "workersandbox.mturk.com/mturk/preview?groupId=3GRP" in out
    study.refresh_from_db()
    assert study.provider == "mturk"
    assert study.provider_options["sandbox"] is True
    assert study.provider_options["reward"] == "0.50"
    assert study.provider_options["exclude_previous_workers"] is False
    assert [c.operation for c in MTurkCall.objects.order_by("id")] == [
        "create_hit_type",
        "create_hit_with_hit_type",
        "create_hit_with_hit_type",
    ]


def test_the_external_question_is_https_escaped_and_fits_the_window():
    xml = external_question("https://study.example.org/s/abc/?a=1&b=2")
    assert xml == (
        '<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/'
        'AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd">'
        "<ExternalURL>https://study.example.org/s/abc/?a=1&amp;b=2</ExternalURL>"
        "<FrameHeight>0</FrameHeight></ExternalQuestion>"
    )


def test_qualifications_and_excluding_previous_workers_find_our_existing_type():
    study = mturk_study(n_assignments=2)
    client = get_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_qualification_type",
            service_error_code="RequestError",
            service_message="You have already created a QualificationType with this name.",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.QualificationTypeAlreadyExists"},
        )
        stub.add_response(
            "list_qualification_types",
            {
                "NumResults": 2,
                "QualificationTypes": [
                    {
                        "QualificationTypeId": "3OTHER0000000000000000000001",
                        "Name": "blindspot-participated-sandbox-old",
                    },
                    {"QualificationTypeId": QUAL, "Name": "blindspot-participated-sandbox"},
                ],
            },
            {
                "Query": "blindspot-participated-sandbox",
                "MustBeRequestable": False,
                "MustBeOwnedByCaller": True,
                "MaxResults": 100,
            },
        )
        expect_hit_type(
            stub,
            requirements=[
                {
                    "QualificationTypeId": "000000000000000000L0",
                    "Comparator": "GreaterThanOrEqualTo",
                    "IntegerValues": [95],
                },
                {
                    "QualificationTypeId": "00000000000000000040",
                    "Comparator": "GreaterThanOrEqualTo",
                    "IntegerValues": [100],
                },
                {
                    "QualificationTypeId": "00000000000000000071",
                    "Comparator": "In",
                    "LocaleValues": [{"Country": "US"}, {"Country": "CA"}],
                },
                {
                    "QualificationTypeId": QUAL,
                    "Comparator": "DoesNotExist",
                    "ActionsGuarded": "DiscoverPreviewAndAccept",
                },
            ],
            Reward="1.25",
            Title="Digits",
            AssignmentDurationInSeconds=2700,
            AutoApprovalDelayInSeconds=86400,
        )
        expect_hit(stub, study, 0, 2, LifetimeInSeconds=7200)
        run(
            "publish",
            "--study",
            study.name,
            "--reward",
            "1.25",
            "--title",
            "Digits",
            "--duration",
            "45m",
            "--lifetime",
            "2h",
            "--auto-approve",
            "1d",
            "--qualification",
            "approval>=95",
            "--qualification",
            "approved-hits>=100",
            "--qualification",
            "locale=US,CA",
            "--exclude-previous-workers",
            "--yes",
        )
        stub.assert_no_pending_responses()
    assert MTurkQualification.objects.get(sandbox=True).type_id == QUAL
    study.refresh_from_db()
    assert study.provider_options["exclude_previous_workers"] is True
    assert study.provider_options["qualification_type_id"] == QUAL


def test_a_hit_that_already_exists_is_looked_up_and_recorded_not_created_again():
    study = mturk_study(n_assignments=3)
    client = get_client()
    token = request_token(study, sandbox=True, index=0)
    with Stubber(client) as stub:
        expect_hit_type(stub)
        stub.add_client_error(
            "create_hit_with_hit_type",
            service_error_code="RequestError",
            service_message=f"The HIT with ID {hit_id(7)} already exists for token {token}. "
            "(1700000000000)",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists"},
            expected_params={
                "HITTypeId": ANY,
                "MaxAssignments": 3,
                "LifetimeInSeconds": ANY,
                "Question": ANY,
                "RequesterAnnotation": ANY,
                "UniqueRequestToken": token,
            },
        )
        stub.add_response(
            "get_hit", {"HIT": hit_body(HITId=hit_id(7), MaxAssignments=3)}, {"HITId": hit_id(7)}
        )
        out = run("publish", "--study", study.name, "--reward", "0.50", "--yes")
        stub.assert_no_pending_responses()
    hit = Hit.objects.get(study=study)
    assert (hit.hit_id, hit.index, hit.request_token) == (hit_id(7), 0, token)
    assert f"recorded HIT {hit_id(7)} created by an earlier, interrupted run" in out


def test_a_request_error_is_one_clear_line_a_non_zero_exit_and_an_audit_row():
    study = mturk_study(n_assignments=3)
    client = get_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_hit_type",
            service_error_code="RequestError",
            service_message="Your account does not have enough funds.",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.InsufficientFunds"},
        )
        with pytest.raises(CommandError) as caught:
            run("publish", "--study", study.name, "--reward", "0.50", "--yes")
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert "enough funds" in message and "AWS.MechanicalTurk.InsufficientFunds" in message
    assert "nothing was published" in message
    assert not Hit.objects.exists()
    row = MTurkCall.objects.get()
    assert not row.ok and row.error_code == "AWS.MechanicalTurk.InsufficientFunds"


def test_a_failure_midway_keeps_the_hits_already_created_and_says_to_run_again():
    study = mturk_study(n_assignments=12)
    with Stubber(get_client()) as stub:
        expect_hit_type(stub)
        expect_hit(stub, study, 0, 9)
        stub.add_client_error(
            "create_hit_with_hit_type",
            service_error_code="RequestError",
            service_message="Rate limit on HITs",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.Limit"},
        )
        with pytest.raises(CommandError, match=r"1 of 2 HITs are published — run publish again"):
            run("publish", "--study", study.name, "--reward", "0.50", "--yes")
    assert list(Hit.objects.published().values_list("hit_id", flat=True)) == [hit_id(1)]
    pending = Hit.objects.pending().get()  # the intent stays: MTurk is asked again next time
    assert (pending.index, pending.max_assignments, pending.hit_id) == (1, 3, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": Study.Status.CLOSED}, "is closed: open it first"),
        ({"status": Study.Status.DRAFT}, "is draft: open it first"),
    ],
)
def test_only_an_open_study_is_published(change, message):
    study = mturk_study(n_assignments=2)
    Study.objects.filter(pk=study.pk).update(**change)
    with pytest.raises(CommandError, match=message):
        run("publish", "--study", study.name, "--reward", "0.50", "--yes")
    assert not MTurkCall.objects.exists()


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("", "PUBLIC_BASE_URL is not set"),
        ("http://study.example.org", "must be an https:// address"),
    ],
)
def test_a_public_base_url_mturk_cannot_frame_is_refused(settings, base, message):
    settings.PUBLIC_BASE_URL = base
    study = mturk_study(n_assignments=2)
    with pytest.raises(CommandError, match=message):
        run("publish", "--study", study.name, "--reward", "0.50", "--yes")
    assert not MTurkCall.objects.exists()


@pytest.mark.parametrize(
    ("sandbox", "endpoint"),
    [(False, None), (True, LIVE_ENDPOINT)],
    ids=["MTURK_SANDBOX=0", "live-endpoint-named"],
)
def test_live_mturk_closed_so_publishing_there_is_refused_in_one_line(settings, sandbox, endpoint):
    mturk_settings(settings, sandbox=sandbox, endpoint=endpoint)
    study = mturk_study(n_assignments=2)
    with pytest.raises(CommandError) as caught:
        run("publish", "--study", study.name, "--reward", "0.50", "--yes")
    message = str(caught.value)
    assert "\n" not in message and message == CLOSURE_NOTICE
    assert message.startswith("Amazon Mechanical Turk closed on 2026-09-30: recruit on Prolific")
    assert "manage.py prolific publish" in message and "docs/prolific.md" in message
    assert not MTurkCall.objects.exists() and not Hit.objects.exists()


@pytest.mark.parametrize(
    ("sandbox", "endpoint"),
    [(True, None), (False, LOCAL_ENDPOINT), (True, LOCAL_ENDPOINT)],
    ids=["sandbox", "live-mode-local-endpoint", "sandbox-local-endpoint"],
)
def test_the_sandbox_and_a_local_endpoint_still_publish(settings, sandbox, endpoint):
    mturk_settings(settings, sandbox=sandbox, endpoint=endpoint)
    study = mturk_study(n_assignments=2)
    with Stubber(get_client()) as stub:
        expect_hit_type(stub)
        token = request_token(study, sandbox=sandbox, index=0)
        params = {"UniqueRequestToken": token, "HITTypeId": ANY, "MaxAssignments": 2}
        params |= {"LifetimeInSeconds": ANY, "Question": ANY, "RequesterAnnotation": ANY}
        stub.add_response("create_hit_with_hit_type", {"HIT": hit_body()}, params)
        out = run("publish", "--study", study.name, "--reward", "0.50", "--yes")
        stub.assert_no_pending_responses()
    assert f"created HIT {hit_id(1)}" in out and Hit.objects.published().count() == 1


def test_live_hits_cannot_point_at_this_machine(settings):
    mturk_settings(settings, sandbox=False, endpoint=LOCAL_ENDPOINT)  # live MTurk itself closed
    settings.PUBLIC_BASE_URL = "https://localhost:8000"
    study = mturk_study(n_assignments=2)
    with pytest.raises(CommandError, match="live HITs cannot send workers"):
        run("publish", "--study", study.name, "--reward", "0.50", "--yes")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reward", "0.505"], "at most 2 decimals"),
        (["--reward", "0"], "at least \\$0.01"),
        (["--reward", "0.50", "--lifetime", "3 weeks"], "not a duration"),
        (["--reward", "0.50", "--duration", "0m"], "not a duration"),
        (["--reward", "0.50", "--qualification", "approval>=101"], "between 0 and 100"),
        (["--reward", "0.50", "--qualification", "locale=USA"], "two-letter country codes"),
        (["--reward", "0.50", "--qualification", "karma>=3"], "unknown qualification"),
        (["--reward", "0.50", "--assignments-per-hit", "0"], "must be positive"),
        (["--reward", "0.50", "--study", "nope"], "no study named nope"),
    ],
)
def test_bad_options_are_clear_errors_before_any_call(args, message):
    study = mturk_study(n_assignments=2)
    base = ["publish", "--study", study.name]
    with pytest.raises(CommandError, match=message):
        run(*base, *args, "--yes")
    assert not MTurkCall.objects.exists()


def test_without_yes_and_without_a_terminal_publish_refuses(monkeypatch):
    study = mturk_study(n_assignments=2)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    with pytest.raises(CommandError, match="stdin is not a terminal \\(pass --yes\\)"):
        run("publish", "--study", study.name, "--reward", "0.50")
    assert not MTurkCall.objects.exists() and not Hit.objects.exists()


def test_the_question_is_asked_and_no_means_nothing_is_spent():
    study = mturk_study(n_assignments=2)
    out = run("publish", "--study", study.name, "--reward", "0.50", stdin="n\n")
    assert "Publish? (SANDBOX, $1.20) [y/N]" in out and "Cancelled; nothing was published." in out
    assert not MTurkCall.objects.exists()
    with Stubber(get_client()) as stub:
        expect_hit_type(stub)
        expect_hit(stub, study, 0, 2)
        run("publish", "--study", study.name, "--reward", "0.50", stdin="y\n")
        stub.assert_no_pending_responses()
    assert Hit.objects.filter(study=study).count() == 1


def test_live_mode_is_announced_in_capitals(settings):
    mturk_settings(settings, sandbox=False, endpoint=LOCAL_ENDPOINT)  # live MTurk itself closed
    study = mturk_study(n_assignments=2)
    out = run("publish", "--study", study.name, "--reward", "0.50", stdin="n\n")
    assert "Mode: LIVE (REAL MONEY)" in out and "Publish? (LIVE, $1.20)" in out


def test_capacity_counts_unleased_assignments_minus_open_mturk_slots():
    study = mturk_study(n_assignments=12)
    assert study_capacity(study=study, sandbox=True).needed == 12
    hit = add_hit(study, 0, size=9)
    assert study_capacity(study=study, sandbox=True).needed == 3
    bind(study, hit, 1)  # an MTurk worker leased and submitted: slot and assignment both used
    assert study_capacity(study=study, sandbox=True).needed == 3
    from tests.annotate.factories import work

    work(study, "panel-worker")  # someone from the study link took one more assignment
    assert study_capacity(study=study, sandbox=True).needed == 2
    assert study_capacity(study=study, sandbox=False).needed == 10  # live has no HITs yet


def test_a_second_publish_when_everything_is_offered_calls_nothing():
    study = mturk_study(n_assignments=9)
    add_hit(study, 0, size=9)
    out = run("publish", "--study", study.name, "--reward", "0.50", "--yes")
    assert "Nothing to publish" in out and not MTurkCall.objects.exists()


@pytest.mark.parametrize(
    ("reward", "per_hit", "fee"),
    [
        ("0.50", 9, "0.10"),
        ("0.50", 10, "0.20"),
        ("0.02", 9, "0.01"),  # 20% is $0.004: the minimum applies
        ("0.04", 12, "0.02"),  # 40% is $0.016 → $0.02
        ("1.00", 1, "0.20"),
    ],
)
def test_fees_are_twenty_or_forty_percent_with_a_cent_minimum(reward, per_hit, fee):
    assert fees.fee(Decimal(reward), assignments_per_hit=per_hit) == Decimal(fee)


def test_a_hit_cost_table_in_decimal():
    cost = fees.rewards_cost([(10, Decimal("0.50")), (3, Decimal("0.50"))])
    assert (cost.paid, cost.fees, cost.total) == (Decimal("6.50"), Decimal("2.30"), Decimal("8.80"))
    assert fees.bonuses_cost(3, Decimal("0.04")).total == Decimal("0.15")


@pytest.mark.parametrize(
    ("text", "requirement"),
    [
        (
            "approval>=95",
            {
                "QualificationTypeId": "000000000000000000L0",
                "Comparator": "GreaterThanOrEqualTo",
                "IntegerValues": [95],
            },
        ),
        (
            "approved-hits > 500",
            {
                "QualificationTypeId": "00000000000000000040",
                "Comparator": "GreaterThan",
                "IntegerValues": [500],
            },
        ),
        (
            "locale=US",
            {
                "QualificationTypeId": "00000000000000000071",
                "Comparator": "EqualTo",
                "LocaleValues": [{"Country": "US"}],
            },
        ),
        (
            "locale=us,ca",
            {
                "QualificationTypeId": "00000000000000000071",
                "Comparator": "In",
                "LocaleValues": [{"Country": "US"}, {"Country": "CA"}],
            },
        ),
        (
            "locale!=IN",
            {
                "QualificationTypeId": "00000000000000000071",
                "Comparator": "NotEqualTo",
                "LocaleValues": [{"Country": "IN"}],
            },
        ),
    ],
)
def test_qualification_flags(text, requirement):
    assert parse_requirement(text) == requirement


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("3d", 259200), ("45", 45)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
