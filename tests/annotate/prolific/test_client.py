"""The HTTP client against the local Prolific: token, paging, retries of reads, no blind retry
of a write whose answer was lost, 429 with Retry-After, errors in one line, the audit."""

from __future__ import annotations

import pytest

from annotate.prolific.client import ProlificClient, ProlificError
from annotate.prolific.models import ProlificCall

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(fake):
    return ProlificClient(sleep=lambda s: None)


def draft(api, name="n"):
    return api.create_study(
        {
            "name": name,
            "internal_name": name,
            "description": "d",
            "external_study_url": "https://x.example/s/?PROLIFIC_PID={{%PROLIFIC_PID%}}",
            "prolific_id_option": "url_parameters",
            "completion_codes": [
                {"code": "C", "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]}
            ],
            "total_available_places": 1,
            "estimated_completion_time": 1,
            "reward": 100,
        }
    )


def test_paging_follows_next_links(api, fake):
    fake.page_size = 2
    for i in range(5):
        draft(api, f"s{i}")
    assert [s["internal_name"] for s in api.studies()] == [f"s{i}" for i in range(5)]
    assert fake.count(r"^GET /api/v1/studies") == 3


def test_reads_are_retried_writes_whose_answer_was_lost_are_not(api, fake):
    fake.fail(r"^GET /api/v1/users/me", status=502, times=2)
    assert api.me()["id"]
    fake.drop_after(r"^POST /api/v1/studies/?$")
    with pytest.raises(ProlificError) as exc:
        draft(api, "lost")
    assert exc.value.uncertain
    assert len(fake.studies) == 1  # it was created once; the client did not send it again


def test_429_waits_and_retries(api, fake):
    waited = []
    api.sleep = waited.append
    fake.fail(r"^POST /api/v1/studies/?$", status=429)
    draft(api, "later")
    assert waited == [1.0] and len(fake.studies) == 1


def test_errors_are_one_line_with_the_field(api, fake):
    with pytest.raises(ProlificError, match=r"reward.*\[HTTP 400\]") as exc:
        api.create_study({"name": "x"})
    assert "\n" not in str(exc.value) and not exc.value.uncertain


def test_a_missing_token_is_said(fake, settings):
    settings.PROLIFIC_API_TOKEN = ""
    with pytest.raises(ProlificError, match="PROLIFIC_API_TOKEN is not set"):
        ProlificClient().me()
    assert fake.calls == []


def test_a_refused_token_points_at_it(fake, settings):
    fake.fail(r"users/me", status=401)
    with pytest.raises(ProlificError, match="check PROLIFIC_API_TOKEN"):
        ProlificClient(sleep=lambda s: None).me()


def test_an_unreachable_endpoint_is_said(settings):
    settings.PROLIFIC_API_URL = "http://127.0.0.1:9/api/v1/"
    settings.PROLIFIC_API_TOKEN = "t"
    with pytest.raises(ProlificError, match="cannot reach"):
        ProlificClient(sleep=lambda s: None).me()


def test_every_request_is_audited(api, fake):
    draft(api, "a")
    fake.fail(r"users/me", status=404)
    with pytest.raises(ProlificError):
        api.me()
    calls = list(
        ProlificCall.objects.order_by("at", "id").values_list("method", "ok", "status_code")
    )
    assert calls == [("POST", True, 201), ("GET", False, 404)]
