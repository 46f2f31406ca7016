"""Worker pages through Django's test client: entry and consent, leasing, error pages, headers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.models import Lease, Study, Worker
from annotate.mturk import handshake
from annotate.work.tokens import lease_token
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db

ANCESTORS = ["https://workersandbox.mturk.com", "https://worker.mturk.com"]


@pytest.fixture(autouse=True)
def frame_ancestors(settings):
    settings.BLINDSPOT_FRAME_ANCESTORS = ANCESTORS


@pytest.fixture
def study() -> Study:
    return make_study(
        n_assignments=2,
        size=5,
        title="Which digit is this?",
        instructions="Look closely at each digit before you answer.",
    )


def entry_url(study: Study) -> str:
    return reverse("annotate:study-entry", args=[study.key])


def start_url(study: Study) -> str:
    return reverse("annotate:study-start", args=[study.key])


def start(client, study: Study, worker_id: str | None = "w-1", consent: bool = True, **extra):
    data = dict(extra)
    if worker_id is not None:
        data["worker_id"] = worker_id
    if consent:
        data["consent"] = "yes"
    return client.post(start_url(study), data)


def token_of(response) -> str:
    match = re.fullmatch(r"/w/([^/]+)/", response["Location"])
    assert match, response["Location"]
    return match.group(1)


def submit_all(client, token: str) -> dict:
    """Answer every item through the worker API and submit, as the page does."""
    payload = client.get(reverse("annotate:api-work", args=[token])).json()
    answers = [{"item": it["key"], "label": "7", "ms": 900} for it in payload["items"]]
    response = client.post(
        reverse("annotate:api-submit", args=[token]),
        {"answers": answers},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def assert_worker_headers(response) -> None:
    csp = response["Content-Security-Policy"]
    framers = csp.split("frame-ancestors ")[1].split(";")[0].split()
    if response.status_code < 400:
        assert framers == ["'self'", *ANCESTORS]
    else:  # message pages (nothing to click) may also be shown in MTurk's frame
        assert framers[: 1 + len(ANCESTORS)] == ["'self'", *ANCESTORS]
        assert set(framers) <= {"'self'", *ANCESTORS, *handshake.FRAME_ANCESTORS}
    for directive in ("default-src 'self'", "img-src 'self'", "script-src 'self'"):
        assert directive in csp
    assert "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert not response.has_header("X-Frame-Options")
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert not response.cookies
    assert not response.has_header("Set-Cookie")


def assert_no_inline_code(html: str) -> None:
    """Everything executable or styled comes from static files (CSP forbids the rest)."""
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html)
    assert "javascript:" not in html.lower()


def test_entry_page_shows_instructions_and_a_consent_form(client, study):
    response = client.get(entry_url(study), {"worker_id": "w-1"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "Which digit is this?" in html
    assert "Look closely at each digit before you answer." in html
    assert f'action="{start_url(study)}"' in html
    assert 'name="consent"' in html and 'type="checkbox"' in html
    assert 'name="worker_id" value="w-1"' in html
    assert ">Start</button>" in html
    assert "csrfmiddlewaretoken" not in html
    assert_worker_headers(response)
    assert_no_inline_code(html)


def test_entry_passes_the_panel_ids_through_to_the_lease(client, study):
    """A local study takes a panel's worker id and attempt id; other sites' ids are theirs."""
    query = {"worker_id": "A1B2C3", "assignment_id": "ASSIGN-9", "hitId": "HIT-4"}
    html = client.get(entry_url(study), query).content.decode()

    assert 'name="worker_id" value="A1B2C3"' in html
    assert 'name="assignment_id" value="ASSIGN-9"' in html
    assert "HIT-4" not in html  # MTurk's parameter means nothing to a link study

    response = start(client, study, worker_id="A1B2C3", assignment_id="ASSIGN-9")
    assert response.status_code == 302
    lease = Lease.objects.get()
    assert lease.worker.external_id == "A1B2C3"
    assert lease.provider_ref == "ASSIGN-9"


def test_prolific_participant_id_names_the_worker(client, study):
    query = {"PROLIFIC_PID": "5f0c0ffee0123456789abcde", "STUDY_ID": "x", "SESSION_ID": "y"}
    html = client.get(entry_url(study), query).content.decode()
    assert 'name="worker_id" value="5f0c0ffee0123456789abcde"' in html


def test_start_requires_consent(client, study):
    response = start(client, study, worker_id="w-7", consent=False)

    assert response.status_code == 400
    html = response.content.decode()
    assert "Please tick the box" in html
    assert 'name="worker_id" value="w-7"' in html
    assert not Lease.objects.exists()
    assert_worker_headers(response)


def test_start_leases_and_redirects_to_the_work_page(client, study):
    response = start(client, study, worker_id="w-1")

    assert response.status_code == 302
    assert_worker_headers(response)
    token = token_of(response)
    lease = Lease.objects.get()
    assert lease.worker.external_id == "w-1"
    assert lease.status == Lease.Status.ACTIVE

    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-api="{reverse("annotate:api-work", args=[token])}"' in html
    assert f'data-done="{reverse("annotate:work-done", args=[token])}"' in html
    assert 'id="grid"' in html and 'id="progress"' in html and 'aria-live="polite"' in html
    assert_worker_headers(page)
    assert_no_inline_code(html)


def test_the_same_page_starting_twice_gets_the_same_lease(client, study):
    """A double click: the entry page's nonce is the browser's proof, the id is not."""
    first = start(client, study, worker_id="w-1", attempt="N" * 22)
    again = start(client, study, worker_id="w-1", attempt="N" * 22)

    assert first.status_code == again.status_code == 302
    assert again["Location"] == first["Location"]
    assert Lease.objects.count() == 1
    assert client.get(again["Location"]).status_code == 200


def test_start_without_a_worker_id_uses_an_anonymous_worker(client, study):
    response = start(client, study, worker_id=None)

    assert response.status_code == 302
    assert Lease.objects.get().worker.source == Worker.Source.ANONYMOUS


def test_malformed_worker_id_gets_a_400_page(client, study):
    response = start(client, study, worker_id="not a valid id!")

    assert response.status_code == 400
    assert "The worker id must be" in response.content.decode()
    assert_worker_headers(response)
    assert not Lease.objects.exists()


def test_get_on_start_goes_back_to_the_entry_page(client, study):
    response = client.get(start_url(study), {"worker_id": "w-1"})

    assert response.status_code == 302
    assert response["Location"] == f"{entry_url(study)}?worker_id=w-1"
    assert not Lease.objects.exists()


def test_full_study_gets_a_study_full_page(client):
    study = make_study(n_assignments=1, size=5)
    assert start(client, study, worker_id="first").status_code == 302

    response = start(client, study, worker_id="second")

    assert response.status_code == 409
    assert "Every task of this study has been taken" in response.content.decode()
    assert "This study is full" in response.content.decode()
    assert_worker_headers(response)
    assert Lease.objects.count() == 1


def test_second_assignment_is_refused_once_the_limit_is_reached(client, study):
    token = token_of(start(client, study, worker_id="w-1"))
    submit_all(client, token)

    response = start(client, study, worker_id="w-1")

    assert response.status_code == 409
    assert "You have already done as many tasks" in response.content.decode()
    assert_worker_headers(response)
    assert Lease.objects.count() == 1


@pytest.mark.parametrize("status", [Study.Status.CLOSED, Study.Status.DRAFT])
def test_study_not_open_gets_a_closed_page(client, status):
    study = make_study(n_assignments=1, size=5, status=status)

    for response in (client.get(entry_url(study)), start(client, study)):
        assert response.status_code == 410
        assert "This study is not taking part right now" in response.content.decode()
        assert_worker_headers(response)
    assert not Lease.objects.exists()


def test_unknown_study_gets_a_not_found_page(client):
    response = client.get(reverse("annotate:study-entry", args=["no-such-study"]))

    assert response.status_code == 404
    assert "There is no study at this address" in response.content.decode()
    assert_worker_headers(response)
    assert client.post(reverse("annotate:study-start", args=["nope"])).status_code == 404


def test_forged_tokens_get_a_403_page(client, study):
    token = token_of(start(client, study))
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")

    for bad in ("garbage", tampered, token + "x"):
        for name in ("annotate:work", "annotate:work-done"):
            response = client.get(reverse(name, args=[bad]))
            assert response.status_code == 403, (name, bad)
            assert "This task link is not valid" in response.content.decode()
            assert_worker_headers(response)


def test_expired_lease_gets_a_410_page_with_a_start_again_hint(client, study):
    token = token_of(start(client, study))
    Lease.objects.update(expires=timezone.now() - timedelta(seconds=1))

    response = client.get(reverse("annotate:work", args=[token]))

    assert response.status_code == 410
    html = response.content.decode()
    assert "Your time for this task ran out" in html
    assert "To start again, open the study link" in html
    assert_worker_headers(response)


def test_done_page_shows_the_completion_code_of_a_submitted_lease(client, study):
    token = token_of(start(client, study))
    work_url = reverse("annotate:work", args=[token])
    done_url = reverse("annotate:work-done", args=[token])
    assert client.get(done_url)["Location"] == work_url  # not submitted yet: back to the grid

    result = submit_all(client, token)
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.SUBMITTED
    assert result["completion_code"] == lease.completion_code
    assert result["done_url"] == done_url

    redirected = client.get(work_url)
    assert redirected.status_code == 302 and redirected["Location"] == done_url
    response = client.get(done_url)
    assert response.status_code == 200
    html = response.content.decode()
    assert f">{lease.completion_code}</output>" in html
    assert 'id="copy"' in html and "Copy code" in html
    assert_worker_headers(response)
    assert_no_inline_code(html)


def test_lease_tokens_are_accepted_by_the_pages(client, study):
    start(client, study)
    token = lease_token(Lease.objects.get())

    assert client.get(reverse("annotate:work", args=[token])).status_code == 200


def test_frame_ancestors_default_to_self_only(client, settings, study):
    settings.BLINDSPOT_FRAME_ANCESTORS = []

    csp = client.get(entry_url(study))["Content-Security-Policy"]

    assert csp.startswith("frame-ancestors 'self';")
