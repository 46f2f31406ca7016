"""The MTurk worker flow in a real browser, inside a third-party iframe with cookies blocked:
preview leases nothing, accept leases one assignment, a reload resumes it, and the finished
work is posted to MTurk's externalSubmit (intercepted here: no network)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import pytest

from annotate.models import Lease, Study
from annotate.mturk import handshake
from annotate.mturk.models import HitAssignment
from tests.annotate.mturk.stubs import add_hit
from tests.browser.conftest import PanelPage
from tests.browser.studies import BLOCK_STORAGE, SIZE, WANTED, grid_study, stored_labels

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SANDBOX = "https://workersandbox.mturk.com"


def frame_with(live_server, study: Study, query: str) -> None:
    link = f"{live_server.url}/s/{study.key}/?{query}"
    PanelPage.html = (
        "<!doctype html><title>MTurk</title><h1>Mechanical Turk (stand-in)</h1>"
        f'<iframe id="task" src="{link}" width="760" height="1150"></iframe>'
    ).encode()


def test_mturk_flow_inside_an_iframe(live_server, browser, artifacts_dir, panel_server, settings):
    study = grid_study()
    study.provider = "mturk"
    study.provider_options = {"sandbox": True}
    study.save()
    hit = add_hit(study, size=1)
    settings.BLINDSPOT_FRAME_ANCESTORS = [panel_server]
    context = browser.new_context(viewport={"width": 1000, "height": 1300})
    context.add_init_script(BLOCK_STORAGE)
    posted: list[dict] = []

    def external_submit(route, request) -> None:
        posted.append({"url": request.url, "form": parse_qs(request.post_data or "")})
        route.fulfill(status=200, content_type="text/html", body="<p id=turk>MTurk got it</p>")

    context.route(f"{SANDBOX}/**", external_submit)
    page = context.new_page()

    # Preview: instructions and an example, no consent form, nothing leased.
    frame_with(live_server, study, f"assignmentId={handshake.PREVIEW}&hitId={hit.hit_id}")
    page.goto(panel_server)
    frame = page.frame_locator("#task")
    expect(frame.get_by_text("This is a preview")).to_be_visible()
    expect(frame.locator("figure.example img")).to_be_visible()
    assert not Lease.objects.exists()
    page.screenshot(path=artifacts_dir / "mturk-preview.png")

    # Accepted: MTurk reloads the frame with the worker's ids.
    ids = f"assignmentId=ASG1&hitId={hit.hit_id}&workerId=WTURK1&turkSubmitTo={SANDBOX}"
    frame_with(live_server, study, ids)
    page.goto(panel_server)
    frame.get_by_label("I have read the instructions").check()
    frame.get_by_role("button", name="Start").click()
    boxes = frame.locator("#grid input")
    expect(boxes).to_have_count(SIZE)
    boxes.first.click()
    page.keyboard.type("".join(WANTED[:10]))
    expect(frame.locator("#progress")).to_have_text(re.compile(rf"^10 / {SIZE} answered"))
    expect(frame.locator("#save-status")).to_have_text("Answers saved.")

    # A reload of MTurk's page comes back to the same grid, answers kept.
    page.reload()
    expect(frame.locator("#progress")).to_have_text(re.compile(rf"^10 / {SIZE} answered"))
    frame.locator("#grid input").nth(10).click()
    page.keyboard.type("".join(WANTED[10:]))
    expect(frame.locator("#progress")).to_have_text(re.compile(rf"^{SIZE} / {SIZE} answered"))
    expect(frame.locator("#save-status")).to_have_text("Answers saved.")
    page.keyboard.press("Enter")

    # Our submit commits first; then the page posts the assignment to MTurk by itself.
    expect(frame.locator("#turk")).to_have_text("MTurk got it")
    lease = Lease.objects.get()  # one lease for the whole visit, reload included
    assert lease.status == Lease.Status.SUBMITTED and stored_labels(lease) == WANTED
    assert HitAssignment.objects.get().lease == lease
    (sent,) = posted
    assert sent["url"] == f"{SANDBOX}/mturk/externalSubmit"
    assert sent["form"]["assignmentId"] == ["ASG1"]
    assert sent["form"]["completion_code"] == [lease.completion_code]
    assert context.cookies() == []
    page.screenshot(path=artifacts_dir / "mturk-submitted.png")
    context.close()
