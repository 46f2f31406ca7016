"""The console's MTurk page: staff only, the mode badge, HITs, problems and audit; actions by
POST with CSRF, and no money spent without the confirmation box."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from annotate.mturk.client import get_client
from annotate.mturk.hits import EXPIRE_AT
from annotate.mturk.models import HitAssignment, MTurkCall
from tests.annotate.mturk.stubs import (
    FAIL,
    add_hit,
    assignment_id,
    bind,
    fake_aws,
    hit_body,
    mturk_settings,
    mturk_study,
    worker_id,
)

pytestmark = pytest.mark.django_db
SUBMITTED = HitAssignment.MTurkStatus.SUBMITTED


@pytest.fixture(autouse=True)
def setup(monkeypatch, tmp_path, settings):
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("staff", password="pw", is_staff=True))
    return client


@pytest.fixture
def study():
    """Worker 1 passes, worker 2 fails the check (both Submitted); worker 3 is a lost submit."""
    study = mturk_study(n_assignments=4)
    hit = add_hit(study, 0, size=4)
    bind(study, hit, 1, mturk_status=SUBMITTED)
    bind(study, hit, 2, mturk_status=SUBMITTED, offset=FAIL)
    bind(study, hit, 3)
    return study


def page(name: str) -> str:
    return reverse("mturk:study", args=[name])


def action(name: str, what: str) -> str:
    return reverse("mturk:study-action", args=[name, what])


def test_only_staff_get_in(client, study):
    assert client.get(page(study.name)).status_code == 302
    client.force_login(get_user_model().objects.create_user("worker", password="pw"))
    assert client.get(page(study.name)).status_code == 302
    assert client.post(action(study.name, "sync")).status_code == 302
    assert not MTurkCall.objects.exists()


def test_the_page_shows_mode_hits_problems_and_the_audit(staff, study):
    MTurkCall.objects.create(
        operation="get_hit",
        sandbox=True,
        study=study,
        ok=False,
        error_code="AWS.MechanicalTurk.HITDoesNotExist",
        message="gone",
    )
    response = staff.get(page(study.name))
    assert response.status_code == 200
    html = response.content.decode()
    assert "SANDBOX" in html and "LIVE mode" not in html
    hit = study.hits.get()
    assert hit.hit_id in html and "workersandbox.mturk.com/mturk/preview?groupId=" in html
    assert f"<code>{assignment_id(3)}</code>" in html and "MTurk never got it" in html
    assert "AWS.MechanicalTurk.HITDoesNotExist" in html
    assert "Submitted <strong>2</strong>" in html


def test_the_page_says_mturk_closed_and_points_to_prolific(staff, study):
    html = staff.get(page(study.name)).content.decode()
    notice = html.split('id="mturk-closed">')[1].split("</p>")[0]
    assert "Amazon Mechanical Turk closed on 2026-09-30" in notice
    assert "manage.py prolific publish" in notice and "docs/prolific.md" in notice
    assert "sandbox and a local endpoint keep working" in notice


def test_live_mode_is_unmistakable(staff, study, settings):
    mturk_settings(settings, sandbox=False)
    html = staff.get(page(study.name)).content.decode()
    assert ">LIVE<" in html and "real money" in html
    assert "no LIVE HITs, but 1 SANDBOX HITs" in html


def test_money_needs_the_confirmation_box(staff, study):
    response = staff.post(action(study.name, "approve"), {"passing_only": "1"}, follow=True)
    assert "tick the box to confirm" in response.content.decode()
    assert not MTurkCall.objects.exists()
    response = staff.post(
        action(study.name, "bonus"),
        {"amount": "0.25", "reason": "x", "workers": worker_id(1)},
        follow=True,
    )
    assert "tick the box to confirm" in response.content.decode()
    assert not MTurkCall.objects.exists()


def test_approve_passing_only_from_the_console(staff, study):
    with Stubber(get_client()) as stub:
        stub.add_response("approve_assignment", {}, {"AssignmentId": assignment_id(1)})
        response = staff.post(
            action(study.name, "approve"), {"passing_only": "1", "confirm": "yes"}, follow=True
        )
        stub.assert_no_pending_responses()
    assert response.redirect_chain[-1][0] == page(study.name)
    text = response.content.decode()
    assert "approve: 1 done, 0 failed" in text and "fails the exclusion rule" in text
    assert HitAssignment.objects.get(assignment_id=assignment_id(2)).mturk_status == SUBMITTED


def test_bonus_from_the_console_checks_the_amount(staff, study):
    data = {"amount": "0.255", "reason": "thanks", "workers": worker_id(1), "confirm": "yes"}
    response = staff.post(action(study.name, "bonus"), data, follow=True)
    assert "at most 2 decimals" in response.content.decode()
    with Stubber(get_client()) as stub:
        stub.add_response("list_bonus_payments", {"BonusPayments": []}, None)  # looked up first
        stub.add_response("send_bonus", {}, None)
        response = staff.post(action(study.name, "bonus"), {**data, "amount": "0.25"}, follow=True)
        stub.assert_no_pending_responses()
    assert "bonus: 1 done" in response.content.decode()


def test_sync_and_expire_from_the_console(staff, study):
    hit = study.hits.get()
    with Stubber(get_client()) as stub:
        stub.add_response("get_hit", {"HIT": hit_body(hit)}, {"HITId": hit.hit_id})
        stub.add_response("list_assignments_for_hit", {"Assignments": []}, None)
        stub.add_response(
            "update_expiration_for_hit", {}, {"HITId": hit.hit_id, "ExpireAt": EXPIRE_AT}
        )
        text = staff.post(action(study.name, "sync"), follow=True).content.decode()
        assert "assignments by MTurk state" in text
        text = staff.post(action(study.name, "expire"), follow=True).content.decode()
        assert "expire: 1 done, 0 failed" in text
        stub.assert_no_pending_responses()


def test_an_mturk_error_becomes_a_message_not_a_traceback(staff, study):
    with Stubber(get_client()) as stub:
        stub.add_client_error(
            "update_expiration_for_hit",
            service_error_code="RequestError",
            service_message="Hit does not exist.",
            modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HITDoesNotExist"},
        )
        response = staff.post(action(study.name, "expire"), follow=True)
    assert response.status_code == 200
    assert "AWS.MechanicalTurk.HITDoesNotExist" in response.content.decode()


def test_actions_need_post_csrf_and_a_known_name(study):
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("s2", password="pw", is_staff=True))
    assert client.get(action(study.name, "sync")).status_code == 405
    assert client.post(action(study.name, "sync")).status_code == 403
    assert client.post(action(study.name, "publish"), {"confirm": "yes"}).status_code == 403
    client = Client()
    client.force_login(get_user_model().objects.get(username="s2"))
    assert client.post(action(study.name, "publish")).status_code == 404
    assert not MTurkCall.objects.exists()
