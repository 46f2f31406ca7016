"""Shared pieces of the MTurk requester tests: fake AWS credentials, a study with HITs, MTurk
ids of the right shape, response bodies for botocore's Stubber, and worker bindings.

Credentials are fake and set through the environment (never ~/.aws); the config and credential
files point nowhere and instance metadata is off, so nothing can reach a real account.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.utils import timezone

from annotate.models import Lease, StimulusSet, Study
from annotate.mturk.client import reset_clients
from annotate.mturk.models import Hit, HitAssignment
from tests.annotate.factories import make_model_row, make_set, make_study, work

PUBLIC = "https://study.example.org"
CHECK_LABEL = 3  # every attention check of ``mturk_study`` shows a 3
PASS, FAIL = 9, 0  # ``work`` offsets: (4 + 9) % 10 == 3 passes the check at position 4


def fake_aws(monkeypatch, tmp_path) -> None:
    """Fake credentials in the environment, no config files, no instance metadata."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    reset_clients()


def mturk_settings(settings, *, endpoint: str | None = None, sandbox: bool = True) -> None:
    settings.MTURK_SANDBOX = sandbox
    settings.MTURK_ENDPOINT_URL = endpoint
    settings.PUBLIC_BASE_URL = PUBLIC
    reset_clients()


def hit_id(n: int) -> str:
    return f"3HIT{n:026d}X"


def assignment_id(n: int) -> str:
    return f"3ASG{n:026d}Y"


def worker_id(n: int) -> str:
    return f"A{n:012d}WK"


def mturk_study(name: str = "turk", *, n_assignments: int = 12, **fields: Any) -> Study:
    """An open study of ``n_assignments`` assignments of 5 images, the last one a check (a 3)."""
    model = make_model_row()
    checks = make_set(1, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=103)
    return make_study(
        [make_set(n_assignments * 4, model=model)],
        n_assignments=n_assignments,
        size=5,
        attention=checks,
        name=name,
        **fields,
    )


def add_hit(study: Study, index: int = 0, *, size: int = 9, sandbox: bool = True) -> Hit:
    """A HIT row as ``publish`` records it (reward $0.50)."""
    return Hit.objects.create(
        study=study,
        sandbox=sandbox,
        index=index,
        request_token=f"bs-{study.key[:12]}-{'sb' if sandbox else 'lv'}-{index}",
        hit_id=hit_id(index + 1),
        hit_type_id="3TYPE0000000000000000000000001",
        hit_group_id="3GRP00000000000000000000000001",
        max_assignments=size,
        reward=Decimal("0.50"),
        lifetime_seconds=3 * 86400,
        duration_seconds=1800,
        auto_approve_seconds=3 * 86400,
        status="Assignable",
        expiration=timezone.now() + dt.timedelta(days=3),
    )


def bind(
    study: Study,
    hit: Hit,
    n: int,
    *,
    submit: bool = True,
    offset: int = PASS,
    mturk_status: str = HitAssignment.MTurkStatus.ACCEPTED,
) -> HitAssignment:
    """Worker ``n`` accepts assignment ``n`` of ``hit`` and works (as the worker page would)."""
    lease = work(study, worker_id(n), submit=submit, offset=offset)
    Lease.objects.filter(pk=lease.pk).update(provider_ref=assignment_id(n))
    return HitAssignment.objects.create(
        hit=hit,
        assignment_id=assignment_id(n),
        worker_id=worker_id(n),
        lease=lease,
        mturk_status=mturk_status,
        accepted=timezone.now(),
    )


def hit_body(hit: Hit | None = None, **fields: Any) -> dict[str, Any]:
    """A GetHIT / CreateHITWithHITType ``HIT`` for the Stubber."""
    now = timezone.now()
    body = {
        "HITId": hit.hit_id if hit else hit_id(1),
        "HITTypeId": "3TYPE0000000000000000000000001",
        "HITGroupId": "3GRP00000000000000000000000001",
        "CreationTime": now,
        "HITStatus": "Assignable",
        "MaxAssignments": hit.max_assignments if hit else 9,
        "Reward": "0.50",
        "AutoApprovalDelayInSeconds": 3 * 86400,
        "AssignmentDurationInSeconds": 1800,
        "Expiration": now + dt.timedelta(days=3),
        "NumberOfAssignmentsPending": 0,
        "NumberOfAssignmentsAvailable": 9,
        "NumberOfAssignmentsCompleted": 0,
    }
    return {**body, **fields}


def assignment_body(n: int, hit: Hit, status: str = "Submitted", **fields: Any) -> dict[str, Any]:
    """One ListAssignmentsForHIT entry for worker ``n``."""
    now = timezone.now()
    body = {
        "AssignmentId": assignment_id(n),
        "WorkerId": worker_id(n),
        "HITId": hit.hit_id,
        "AssignmentStatus": status,
        "AcceptTime": now - dt.timedelta(minutes=20),
        "SubmitTime": now - dt.timedelta(minutes=5),
        "AutoApprovalTime": now + dt.timedelta(days=3),
        "Answer": "<QuestionFormAnswers/>",
    }
    if status == "Approved":
        body["ApprovalTime"] = now
    if status == "Rejected":
        body["RejectionTime"] = now
    return {**body, **fields}


def run(*args: str, stdin: str | None = None) -> str:
    """``manage.py mturk …`` in-process; its standard output."""
    out = io.StringIO()
    extra = {"stdin": io.StringIO(stdin)} if stdin is not None else {}
    call_command("mturk", *args, stdout=out, stderr=io.StringIO(), **extra)
    return out.getvalue()
