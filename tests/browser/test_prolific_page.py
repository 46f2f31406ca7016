"""The Prolific flow end to end in a real browser, against the local Prolific: publish → a
participant arrives from Prolific with PROLIFIC_PID, STUDY_ID and SESSION_ID → consents →
labels → lands on Prolific's completion URL → sync shows the submission → approve → bonus.
Another participant returns the study midway; the signed webhook frees the assignment at once."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command

from annotate.models import Lease
from annotate.prolific.models import ProlificStudy, ProlificSubmission
from annotate.prolific.testing import FakeProlific
from tests.annotate.prolific.helpers import arrival, prolific_study
from tests.browser.studies import SIZE, WANTED, grid_study, stored_labels

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def prolific(*args: str) -> str:
    out = io.StringIO()
    call_command("prolific", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def fake(live_server, settings):
    with FakeProlific(hook_url=f"{live_server.url}/hooks/prolific/", hook_secret="s3") as endpoint:
        settings.PROLIFIC_API_URL = endpoint.url + "/api/v1/"
        settings.PROLIFIC_APP_URL = endpoint.url
        settings.PROLIFIC_API_TOKEN = "test-token"
        settings.PROLIFIC_WEBHOOK_SECRET = "s3"
        settings.PUBLIC_BASE_URL = live_server.url
        yield endpoint


def test_prolific_flow_in_a_browser(live_server, browser, artifacts_dir, fake):
    study = grid_study()  # one assignment of 25 images
    prolific("publish", "--study", study.name, "--reward", "1.20", "--yes")
    remote = ProlificStudy.objects.get()
    start = f"{fake.url}/studies/{remote.prolific_id}/start"

    # P-RET starts, labels a few images, then returns the study on Prolific.
    quitter = browser.new_context(viewport={"width": 420, "height": 900})  # a phone
    page = quitter.new_page()
    page.goto(f"{start}?PROLIFIC_PID=P-RET")
    expect(page.get_by_role("link", name="I do not want to take part")).to_be_visible()
    page.get_by_label("I have read the instructions").check()
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#grid input")).to_have_count(SIZE)
    page.locator("#grid input").first.click()
    page.keyboard.type("123")
    expect(page.locator("#save-status")).to_have_text("Answers saved.")
    page.goto(f"{fake.url}/submissions/return")
    expect(page.locator("#status")).to_have_text("RETURNED")
    assert fake.wait_for_deliveries(2, timeout=10)  # ACTIVE on start, RETURNED now
    assert [d["status"] for d in fake.deliveries] == [200, 200]  # signed, accepted
    first = Lease.objects.get(worker__external_id="P-RET")
    for _ in range(50):  # the webhook is delivered in the background
        first.refresh_from_db()
        if first.status == Lease.Status.EXPIRED:
            break
        page.wait_for_timeout(100)
    assert first.status == Lease.Status.EXPIRED  # the only assignment is free again
    quitter.close()

    # P-DONE takes the same assignment and finishes.
    context = browser.new_context(viewport={"width": 1000, "height": 1300})
    page = context.new_page()
    page.goto(f"{start}?PROLIFIC_PID=P-DONE")
    assert "SESSION_ID=" in page.url and "STUDY_ID=" in page.url
    page.get_by_label("I have read the instructions").check()
    page.get_by_role("button", name="Start").click()
    boxes = page.locator("#grid input")
    expect(boxes).to_have_count(SIZE)
    boxes.first.click()
    page.keyboard.type("".join(WANTED))
    expect(page.locator("#progress")).to_have_text(re.compile(rf"^{SIZE} / {SIZE} answered"))
    expect(page.locator("#save-status")).to_have_text("Answers saved.")
    page.keyboard.press("Enter")
    # The done page sends the participant to Prolific's completion URL by itself.
    expect(page.locator("#status")).to_have_text("AWAITING REVIEW")
    assert page.url.startswith(f"{fake.url}/submissions/complete?cc={remote.completion_code}")
    page.screenshot(path=artifacts_dir / "prolific-completed.png")
    lease = Lease.objects.get(worker__external_id="P-DONE")
    assert lease.status == Lease.Status.SUBMITTED and stored_labels(lease) == WANTED
    assert lease.assignment == first.assignment

    out = prolific("sync", "--study", study.name)
    assert "AWAITING REVIEW 1" in out and "RETURNED 1" in out
    assert "no disagreements" in out
    assert "approve: 1 done" in prolific("approve", "--study", study.name, "--yes")
    prolific("bonus", "--study", study.name, "--amount", "0.30", "--all-approved", "--yes")
    done = ProlificSubmission.objects.get(participant_id="P-DONE")
    assert done.status == "APPROVED" and done.bonus is not None
    assert [p["rows"] for p in fake.payments] == [[(done.submission_id, 30)]]
    context.close()


def test_the_page_warns_before_prolifics_time_limit(live_server, browser):
    study = prolific_study("late", max_minutes=3)  # the lease ends 2 minutes from now
    query = "&".join(f"{k}={v}" for k, v in arrival(study).items())
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.key}/?{query}")
    page.get_by_label("I have read the instructions").check()
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#grid input")).to_have_count(5)
    expect(page.locator("#deadline")).to_be_visible()
    expect(page.locator("#deadline")).to_contain_text("Please submit soon")
    lease = Lease.objects.get()
    assert lease.expires <= lease.deadline
    context.close()
