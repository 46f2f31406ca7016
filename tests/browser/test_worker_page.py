"""The worker page in a real browser: keyboard only, resume after reload, a phone, an iframe.

Debian's chromium (headless) through Playwright's sync API against pytest-django's live
server; screenshots are kept in the artifacts folder (see conftest.py).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Answer, Lease
from tests.browser.conftest import PanelPage
from tests.browser.studies import BLOCK_STORAGE, SIZE, WANTED, grid_study, stored_labels

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_keyboard_only_with_a_reload_midway(live_server, browser, artifacts_dir):
    study = grid_study()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.key}/?worker_id=keyboard-1")

    # Entry: consent and start with the keyboard alone.
    page.keyboard.press("Tab")
    expect(page.locator("#consent")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.locator("#consent")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Start")).to_be_focused()
    page.screenshot(path=artifacts_dir / "entry.png")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/w/[^/]+/$"))

    boxes = page.locator("#grid input")
    progress = page.locator("#progress")
    saved = page.locator("#save-status")
    expect(boxes).to_have_count(SIZE)
    expect(boxes.nth(0)).to_be_focused()
    expect(boxes.nth(0)).to_have_attribute("aria-label", f"Image 1 of {SIZE}")
    expect(page.locator("#submit")).to_be_disabled()

    page.keyboard.type("".join(WANTED[:11]), delay=15)
    wrong = "8" if WANTED[11] != "8" else "9"
    page.keyboard.type(wrong)
    expect(boxes.nth(12)).to_be_focused()
    page.keyboard.press("Backspace")  # on an empty box: clears the previous one, moves back
    expect(boxes.nth(11)).to_be_focused()
    expect(boxes.nth(11)).to_have_value("")
    page.keyboard.type(WANTED[11])
    page.keyboard.type("x")  # not a digit: ignored
    expect(boxes.nth(12)).to_be_focused()
    expect(boxes.nth(12)).to_have_value("")
    expect(progress).to_have_text(f"12 / {SIZE} answered")
    expect(saved).to_have_text("Answers saved.")
    page.screenshot(path=artifacts_dir / "grid-desktop.png", full_page=True)

    lease = Lease.objects.get(worker__external_id="keyboard-1")
    assert stored_labels(lease) == WANTED[:12]

    page.reload()
    expect(boxes).to_have_count(SIZE)
    for i in range(12):
        expect(boxes.nth(i)).to_have_value(WANTED[i])
    expect(boxes.nth(12)).to_be_focused()
    expect(progress).to_have_text(f"12 / {SIZE} answered")
    page.screenshot(path=artifacts_dir / "grid-restored.png", full_page=True)

    page.keyboard.press("ArrowLeft")  # arrows move without changing anything
    expect(boxes.nth(11)).to_be_focused()
    page.keyboard.press("ArrowRight")
    page.keyboard.type("".join(WANTED[12:]), delay=15)
    expect(boxes.nth(SIZE - 1)).to_be_focused()
    expect(page.locator("#submit")).to_be_enabled()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/w/[^/]+/done$"))

    lease.refresh_from_db()
    assert lease.status == Lease.Status.SUBMITTED
    expect(page.locator("#code")).to_have_text(lease.completion_code)
    assert stored_labels(lease) == WANTED
    times = list(Answer.objects.filter(lease=lease).values_list("response_ms", flat=True))
    assert all(ms is not None and ms > 0 for ms in times)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy code")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == lease.completion_code
    page.screenshot(path=artifacts_dir / "done.png")
    assert context.cookies() == []
    context.close()


def test_phone_layout_and_touch(live_server, browser, artifacts_dir):
    study = grid_study()
    context = browser.new_context(
        viewport={"width": 375, "height": 667},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.key}/?worker_id=phone-1")
    page.get_by_label("I have read the instructions").check()
    page.get_by_role("button", name="Start").tap()
    page.wait_for_url(re.compile(r"/w/[^/]+/$"))

    boxes = page.locator("#grid input")
    expect(boxes).to_have_count(SIZE)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    columns = page.evaluate(
        "getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length"
    )
    assert 2 <= columns <= 4
    image = page.locator("#grid img").first
    box = image.bounding_box()
    assert (box["width"], box["height"]) == (84, 84)
    assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    assert image.evaluate("img => img.complete && img.naturalWidth") == 28
    assert boxes.first.bounding_box()["height"] >= 44
    assert page.locator("#submit").bounding_box()["height"] >= 44
    page.screenshot(path=artifacts_dir / "grid-phone.png")

    boxes.first.tap()
    page.keyboard.type("".join(WANTED[:-1]))
    expect(boxes.nth(SIZE - 1)).to_be_focused()
    page.get_by_role("button", name="can’t tell").tap()  # the phone keypad has no "?"
    expect(boxes.nth(SIZE - 1)).to_have_value("?")
    page.screenshot(path=artifacts_dir / "grid-phone-answered.png", full_page=True)
    page.locator("#submit").tap()
    page.wait_for_url(re.compile(r"/done$"))

    lease = Lease.objects.get(worker__external_id="phone-1")
    expect(page.locator("#code")).to_have_text(lease.completion_code)
    assert stored_labels(lease) == WANTED[:-1] + ["?"]
    page.screenshot(path=artifacts_dir / "done-phone.png")
    context.close()


def test_a_lease_that_expires_midway_is_explained_and_locked(live_server, browser, artifacts_dir):
    study = grid_study()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{study.key}/?worker_id=slow-1")
    page.get_by_label("I have read the instructions").check()
    page.get_by_role("button", name="Start").click()
    boxes = page.locator("#grid input")
    expect(boxes.nth(0)).to_be_focused()
    page.keyboard.type("12")
    expect(page.locator("#save-status")).to_have_text("Answers saved.")

    Lease.objects.update(expires=timezone.now() - timedelta(seconds=1))
    page.keyboard.type("3")

    problem = page.get_by_role("alert")
    expect(problem).to_contain_text("Your time for this task ran out")
    expect(problem).to_contain_text("open the study link")
    expect(boxes.nth(3)).to_have_attribute("readonly", "")
    expect(page.locator("#submit")).to_be_disabled()
    page.keyboard.type("4")
    expect(boxes.nth(3)).to_have_value("")
    page.screenshot(path=artifacts_dir / "grid-expired.png")
    assert stored_labels(Lease.objects.get()) == ["1", "2"]
    context.close()


def test_inside_a_third_party_iframe_with_cookies_blocked(
    live_server, browser, artifacts_dir, panel_server, settings
):
    study = grid_study()
    assert "localhost" in live_server.url  # the panel (127.0.0.1) is another site
    settings.BLINDSPOT_FRAME_ANCESTORS = [panel_server]
    link = f"{live_server.url}/s/{study.key}/?workerId=FRAMED1&assignmentId=AS-1&hitId=HIT-1"
    PanelPage.html = (
        "<!doctype html><title>Panel</title><h1>Recruiting panel</h1>"
        f'<iframe id="task" src="{link}" width="760" height="1150"></iframe>'
    ).encode()
    context = browser.new_context(viewport={"width": 1000, "height": 1300})
    context.add_init_script(BLOCK_STORAGE)
    page = context.new_page()
    cookies_sent = []
    page.on(
        "response",
        lambda r: cookies_sent.append(r.url) if "set-cookie" in r.all_headers() else None,
    )
    page.goto(panel_server)

    frame = page.frame_locator("#task")
    frame.get_by_label("I have read the instructions").check()
    frame.get_by_role("button", name="Start").click()
    boxes = frame.locator("#grid input")
    expect(boxes).to_have_count(SIZE)
    expect(frame.locator("#progress")).to_have_text(f"0 / {SIZE} answered")
    boxes.first.click()
    page.keyboard.type("".join(WANTED))
    expect(frame.locator("#progress")).to_have_text(re.compile(rf"^{SIZE} / {SIZE} answered"))
    page.screenshot(path=artifacts_dir / "grid-iframe.png")
    page.keyboard.press("Enter")

    lease = Lease.objects.get(worker__external_id="FRAMED1")
    expect(frame.locator("#code")).to_have_text(lease.completion_code)
    assert lease.provider_ref == "AS-1"
    assert stored_labels(lease) == WANTED
    assert cookies_sent == []
    assert context.cookies() == []
    page.screenshot(path=artifacts_dir / "done-iframe.png")
    context.close()
