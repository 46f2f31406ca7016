"""The console's Prolific page: staff only, the LOCAL/LIVE badge, submissions, problems and the
audit; actions by POST, and no money spent without the confirmation box."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotate.prolific.models import ProlificCall
from tests.annotate.prolific.test_flow import participate, published

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("staff", password="pw", is_staff=True))
    return client


def test_only_staff_see_the_page(client, fake):
    study, _, _ = published(fake, "c1", 1)
    response = client.get(reverse("prolific:study", args=[study.name]))
    assert response.status_code == 302 and "login" in response["Location"]


def test_page_shows_state_and_actions_run(staff, fake):
    study, remote, _ = published(fake, "c2", 2)
    session, _ = participate(fake, staff, remote, "P1")
    page = staff.get(reverse("prolific:study", args=[study.name]))
    html = page.content.decode()
    assert page.status_code == 200 and "LOCAL" in html and remote.prolific_id in html
    assert "POST studies/" in html  # the audit
    sync = staff.post(reverse("prolific:study-action", args=[study.name, "sync"]), follow=True)
    assert "1 submissions listed by Prolific" in sync.content.decode()
    assert session in sync.content.decode()


def test_spending_needs_the_confirmation_box(staff, fake):
    study, remote, _ = published(fake, "c3", 1)
    participate(fake, staff, remote, "P1")
    staff.post(reverse("prolific:study-action", args=[study.name, "sync"]))
    calls = ProlificCall.objects.count()
    page = staff.post(
        reverse("prolific:study-action", args=[study.name, "approve"]),
        {"passing_only": "0"},
        follow=True,
    )
    assert "tick the box" in page.content.decode()
    assert ProlificCall.objects.count() == calls
    page = staff.post(
        reverse("prolific:study-action", args=[study.name, "approve"]),
        {"passing_only": "0", "confirm": "yes"},
        follow=True,
    )
    assert "approve: 1 done" in page.content.decode()


def test_unknown_action_is_404(staff, fake):
    study, _, _ = published(fake, "c4", 1)
    assert (
        staff.post(reverse("prolific:study-action", args=[study.name, "nuke"])).status_code == 404
    )


def test_the_study_page_links_to_the_provider_page(staff, fake):
    study, _, _ = published(fake, "c5", 1)
    html = staff.get(reverse("console:study", args=[study.name])).content.decode()
    assert reverse("prolific:study", args=[study.name]) in html
