"""A whole worker flow and the staff pages with no provider app installed.

Not collected on its own (no ``test_`` prefix): ``test_without_mturk.py`` runs it in a fresh
interpreter with ``BLINDSPOT_PROVIDER_APPS=''``, so Django starts without ``annotate.mturk``.
"""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from annotate.models import Lease
from annotate.providers import registry
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


def test_mturk_is_not_installed():
    assert not apps.is_installed("annotate.mturk")
    assert [p.name for p in registry.providers()] == ["local"]
    with pytest.raises(Exception, match="Unknown command"):
        call_command("mturk", "status", "--study", "x")


def test_a_worker_labels_a_study_from_the_link_to_the_code(client):
    study = make_study(n_assignments=1, size=3)
    entry = client.get(reverse("annotate:study-entry", args=[study.key]), {"worker_id": "w1"})
    assert entry.status_code == 200 and 'name="worker_id" value="w1"' in entry.content.decode()
    start = client.post(
        reverse("annotate:study-start", args=[study.key]), {"worker_id": "w1", "consent": "yes"}
    )
    token = re.fullmatch(r"/w/([^/]+)/", start["Location"]).group(1)
    assert client.get(reverse("annotate:work", args=[token])).status_code == 200
    items = client.get(reverse("annotate:api-work", args=[token])).json()["items"]
    answers = [{"item": i["key"], "label": "7", "ms": 900} for i in items]
    done = client.post(
        reverse("annotate:api-submit", args=[token]), {"answers": answers}, "application/json"
    )
    assert done.status_code == 200 and done.json()["completion_code"]
    page = client.get(reverse("annotate:work-done", args=[token])).content.decode()
    assert "paste this code into the recruiting site" in page
    assert Lease.objects.get().status == Lease.Status.SUBMITTED


def test_staff_pages_and_api_work(client):
    study = make_study(n_assignments=2, size=3)
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    page = client.get(reverse("console:study", args=[study.name]))
    assert page.status_code == 200 and "Mechanical Turk" not in page.content.decode()
    assert client.get(f"/console/mturk/studies/{study.name}/").status_code == 404
    assert client.get(reverse("staff-api:study-list")).json()["count"] == 1
