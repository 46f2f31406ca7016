"""Browser fixtures: Debian's chromium driven by Playwright (never a downloaded browser).

Screenshots go to ``var/test-artifacts/`` (or ``$BLINDSPOT_TEST_ARTIFACTS``) and are kept.
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ENVIRONMENT = {"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "DJANGO_ALLOW_ASYNC_UNSAFE": "true"}


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
    path = Path(os.environ.get("BLINDSPOT_TEST_ARTIFACTS", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(django_db_setup):
    """A headless chromium for one module (Playwright's sync API).

    The sync API keeps an asyncio loop running on this thread, which makes Django refuse
    sync database calls; the test database is therefore set up first, and the refusal is
    lifted only while the browser lives (the ORM calls of these tests are plain sync code).
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing")
    # CI shares two cores with the live server: give assertions time before they fail.
    sync_api.expect.set_options(timeout=15_000)
    saved = {name: os.environ.get(name) for name in ENVIRONMENT}
    os.environ.update(ENVIRONMENT)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            yield browser
            browser.close()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class PanelPage(BaseHTTPRequestHandler):
    """A recruiting panel on another site: one page framing the study link."""

    html = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def panel_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), PanelPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()
