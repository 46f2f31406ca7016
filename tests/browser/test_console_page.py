"""The console's study page in a real browser: staff log in through the admin form, see results.

Debian's chromium (headless) through Playwright's sync API against the live server; the
screenshot is kept in the artifacts folder as ``console-study.png``.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from annotate.models import StimulusSet, Study
from annotate.work.answers import lease_submit
from annotate.work.leases import lease_acquire
from tests.annotate.factories import make_model_row, make_set, make_study
from tests.annotate.mturk.stubs import add_hit

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def answered_study():
    """Two conditions with attention checks and three submitted workers."""
    model = make_model_row(name="lenet-demo")
    sets = [
        make_set(12, name="adv-plain", model=model),
        make_set(12, name="adv-b", first_source=12),
    ]
    checks = make_set(4, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=100)
    study = make_study(sets, n_assignments=6, size=5, attention=checks, name="console-demo")
    for w in range(6):
        lease = lease_acquire(study=study, worker_id=f"worker-{w}")
        items = lease.assignment.items.select_related("stimulus")
        answers = [
            {
                "item": i.key,
                "label": str(i.stimulus.original_label)
                if i.is_attention
                else [str(i.stimulus.target), str(i.stimulus.original_label), "?"][
                    (i.position + w) % 3
                ],
                "ms": 700,
            }
            for i in items
        ]
        lease_submit(lease=lease, answers=answers)
    return study


def test_staff_log_in_and_see_the_study_page(live_server, browser, artifacts_dir):
    study = answered_study()
    get_user_model().objects.create_user("staff", password="secret-pw", is_staff=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{live_server.url}/console/studies/{study.name}/")
    page.wait_for_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", "staff")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(rf"/console/studies/{study.name}/$"))
    expect(page.locator("table.results tbody tr")).to_have_count(2)
    expect(page.locator("figure.chart svg")).to_be_visible()
    expect(page.get_by_role("button", name="Close study")).to_be_visible()
    page.wait_for_function(
        "() => [...document.images].every(img => img.complete && img.naturalWidth > 0)"
    )
    page.screenshot(path=artifacts_dir / "console-study.png", full_page=True)
    page.get_by_role("button", name="Close study").click()
    expect(page.locator(".messages")).to_contain_text("now closed")
    page.close()


def staff_page(browser, live_server, client, username: str, viewport: dict):
    """A browser page already logged in as a new staff user (the test client's session)."""
    user = get_user_model().objects.create_user(username, password="secret-pw", is_staff=True)
    client.force_login(user)
    page = browser.new_page(viewport=viewport)
    cookie = client.cookies["sessionid"]
    page.context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return page


def test_home_page_bars_move_without_a_reload(live_server, browser, artifacts_dir, client):
    study = make_study(name="live-demo", n_assignments=4)
    page = staff_page(browser, live_server, client, "staff2", {"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/console/")
    row = page.locator('tr[data-study="live-demo"]')
    expect(row.locator('[data-count="open"]').first).to_have_text("4")
    lease = lease_acquire(study=study, worker_id="w-live")  # while the page is open
    expect(row.locator('td[data-count="leased"]')).to_have_text("1", timeout=20_000)
    width = row.locator('[data-seg="leased"]').evaluate("el => el.style.width")
    assert width == "25%"
    lease_submit(
        lease=lease,
        answers=[{"item": i.key, "label": "3", "ms": 500} for i in lease.assignment.items.all()],
    )
    expect(row.locator('td[data-count="submitted"]')).to_have_text("1", timeout=20_000)
    page.screenshot(path=artifacts_dir / "console-home.png", full_page=True)
    page.close()


def test_forms_and_the_mturk_page_render(live_server, browser, artifacts_dir, client):
    study = answered_study()
    Study.objects.filter(pk=study.pk).update(provider="mturk", provider_options={"sandbox": True})
    hit = add_hit(study, size=6)
    page = staff_page(browser, live_server, client, "staff3", {"width": 1300, "height": 1000})
    page.goto(f"{live_server.url}/console/mturk/studies/{study.name}/")
    expect(page.get_by_text("SANDBOX").first).to_be_visible()
    expect(page.get_by_text(hit.hit_id).first).to_be_visible()
    page.screenshot(path=artifacts_dir / "console-mturk.png", full_page=True)
    page.goto(f"{live_server.url}/console/studies/new/")
    expect(page.get_by_role("heading", name="New study")).to_be_visible()
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".field-error").first).to_be_visible()  # nothing filled in
    page.screenshot(path=artifacts_dir / "console-new-study.png", full_page=True)
    page.goto(f"{live_server.url}/console/stimuli/new/")
    expect(page.get_by_role("heading", name="Generate stimuli")).to_be_visible()
    page.screenshot(path=artifacts_dir / "console-generate.png", full_page=True)
    page.close()
