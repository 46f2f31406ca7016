"""No one client grabs a study's work (finding 8): DRF throttles, per client and per study."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotate.models import Lease
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    settings.BLINDSPOT_THROTTLE_RATES = {"lease": "3/min", "study": "5/min", "work": "1000/min"}
    return settings


def lease(client, study, addr: str = "203.0.113.7", **extra):
    return client.post(
        reverse("annotate:api-lease", args=[study.key]), json.dumps({}), "application/json",
        REMOTE_ADDR=addr, **extra,
    )  # fmt: skip


def test_one_anonymous_client_cannot_lease_every_assignment(client, rates):
    study = make_study(n_assignments=10)
    codes = [lease(client, study).status_code for _ in range(6)]
    assert codes == [201, 201, 201, 429, 429, 429]
    refused = lease(client, study)
    assert refused.json()["error"] == "throttled" and "try again in" in refused.json()["hint"]
    assert int(refused["Retry-After"]) >= 1
    assert Lease.objects.count() == 3
    # Another client: the first one's refused requests spent nothing of the study's share.
    assert lease(client, study, addr="198.51.100.9").status_code == 201


def test_a_study_has_a_ceiling_whoever_asks(client, rates):
    study = make_study(n_assignments=10)
    codes = [lease(client, study, addr=f"192.0.2.{i}").status_code for i in range(7)]
    assert codes == [201] * 5 + [429] * 2
    other = make_study(n_assignments=2)
    assert lease(client, other, addr="192.0.2.99").status_code == 201


def test_the_start_form_is_throttled_with_a_page_that_says_when(client, rates):
    study = make_study(n_assignments=10)
    start = reverse("annotate:study-start", args=[study.key])
    codes = [
        client.post(start, {"consent": "yes"}, REMOTE_ADDR="203.0.113.8").status_code
        for _ in range(4)
    ]
    assert codes == [302, 302, 302, 429]
    page = client.post(start, {"consent": "yes"}, REMOTE_ADDR="203.0.113.8")
    assert "Please wait" in page.content.decode() and int(page["Retry-After"]) >= 1


def test_behind_a_proxy_the_client_is_the_proxys_address_for_it(client, rates, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    study = make_study(n_assignments=10)
    forged = "198.51.100.1, 10.0.0.{}"  # a client may forge the left part, never the right
    codes = [
        lease(client, study, addr="127.0.0.1", HTTP_X_FORWARDED_FOR=forged.format(7)).status_code
        for _ in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    other = lease(client, study, addr="127.0.0.1", HTTP_X_FORWARDED_FOR=forged.format(8))
    assert other.status_code == 201
