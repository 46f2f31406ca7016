"""The HTTP side of the in-memory Prolific: the JSON API under ``/api/v1/`` (token check, routes,
Prolific's error envelope), the participant site's small HTML pages, the injected failures
(fail, hold, drop) applied around each request, and the signed webhook POSTs going out. The
state lives in :mod:`annotate.prolific.testing.endpoint`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from annotate.prolific.testing.endpoint import FakeProlific

API_ROOT = "/api/v1/"
_HTML = "text/html; charset=utf-8"
SESSION_COOKIE = "fake_prolific_session"
STUDY, SUBMISSION, BONUS = "(?P<study_id>[^/]+)", "(?P<submission_id>[^/]+)", "(?P<bonus_id>[^/]+)"

# (method, path under /api/v1/, FakeProlific.api_<name>, status on success)
ROUTES: list[tuple[str, re.Pattern[str], str, int]] = [
    (method, re.compile(API_ROOT + path), name, ok)
    for method, path, name, ok in [
        ("GET", "users/me/", "users_me", 200),
        ("GET", "studies/", "list_studies", 200),
        ("POST", "studies/", "create_study", 201),
        ("GET", f"studies/{STUDY}/", "get_study", 200),
        ("PATCH", f"studies/{STUDY}/", "update_study", 200),
        ("POST", f"studies/{STUDY}/transition/", "transition_study", 200),
        ("GET", f"studies/{STUDY}/submissions/", "list_submissions", 200),
        ("POST", "submissions/bulk-approve/", "bulk_approve", 200),
        ("POST", "submissions/bonus-payments/", "set_up_bonuses", 201),
        ("GET", f"submissions/{SUBMISSION}/", "get_submission", 200),
        ("POST", f"submissions/{SUBMISSION}/transition/", "transition_submission", 200),
        ("POST", f"bulk-bonus-payments/{BONUS}/pay/", "pay_bonuses", 202),
        ("POST", "messages/", "send_message", 204),
    ]
]


class ProlificError(Exception):
    """An error answer: ``detail`` is a message, or a field → messages dict for validation."""

    def __init__(
        self, status: int, detail: str | dict[str, list[str]], headers: dict | None = None
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail))
        self.status, self.detail, self.headers = status, detail, headers or {}

    def body(self) -> dict[str, Any]:
        phrase = HTTPStatus(self.status).phrase
        return {
            "error": {
                "status": self.status,
                "error_code": 140000 + self.status,
                "title": phrase,
                "detail": self.detail,
            }
        }


@dataclass
class Call:
    """One API request: path parameters, query (first values), JSON body, path and base URL."""

    params: dict[str, str]
    query: dict[str, str]
    body: Any
    path: str
    base: str


@dataclass
class Page:
    """A participant-site answer: a status, a sentence, the submission's status, headers."""

    status: int
    message: str
    submission_status: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Hold:
    """A paused request: ``arrived`` is set when it reaches the hold point; ``release()`` lets
    it go on (stopping the fake releases every hold)."""

    def __init__(self, before: bool) -> None:
        self.before = before
        self.arrived = threading.Event()
        self._go = threading.Event()

    def release(self) -> None:
        self._go.set()

    def block(self) -> None:
        self.arrived.set()
        self._go.wait()


@dataclass
class Rule:
    """One injected behaviour for requests whose ``"METHOD /path"`` matches ``pattern``."""

    kind: str  # "fail", "drop" or "hold"
    pattern: re.Pattern[str]
    times: int
    status: int = 500
    hold: Hold | None = None


@dataclass
class Plan:
    """What the injected rules make of one request: answer an error, hold, drop the answer."""

    fail: ProlificError | None = None
    drop: bool = False
    hold_before: Hold | None = None
    hold_after: Hold | None = None


class Faults:
    """The injected rules; each matching request takes one use of at most one rule per kind
    (a failure alone, since a failed request does nothing else)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []

    def add(self, rule: Rule) -> None:
        with self.lock:
            self.rules.append(rule)

    def take(self, line: str) -> Plan:
        plan = Plan()
        with self.lock:
            matching = [r for r in self.rules if r.times > 0 and r.pattern.search(line)]
            fail = next((r for r in matching if r.kind == "fail"), None)
            for rule in [fail] if fail else matching:
                if rule.kind == "fail":
                    extra = {"Retry-After": "1"} if rule.status == 429 else {}
                    phrase = HTTPStatus(rule.status).phrase
                    plan.fail = ProlificError(rule.status, f"{phrase} (injected).", extra)
                elif rule.kind == "drop" and not plan.drop:
                    plan.drop = True
                elif rule.hold and rule.hold.before and plan.hold_before is None:
                    plan.hold_before = rule.hold
                elif rule.hold and not rule.hold.before and plan.hold_after is None:
                    plan.hold_after = rule.hold
                else:
                    continue
                rule.times -= 1
            self.rules = [r for r in self.rules if r.times > 0 or r.hold]
        return plan

    def release_all(self) -> None:
        with self.lock:
            holds = [r.hold for r in self.rules if r.hold]
        for hold in holds:
            hold.release()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Prolific's webhook signature: base64 of HMAC-SHA256(secret, timestamp + body)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class HookSender:
    """Posts signed webhooks from one background thread, in order, keeping every attempt in
    ``deliveries`` (one try each; the receiver's answer or error is recorded)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.deliveries: list[dict[str, Any]] = []
        self._outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None

    def send(self, url: str, secret: str, payload: dict[str, Any], *, event_id: str) -> None:
        self._outbox.put({"url": url, "secret": secret, "payload": payload, "event_id": event_id})
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def wait(self, n: int, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: len(self.deliveries) >= n, timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._outbox.put(None)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while (event := self._outbox.get()) is not None:
            record = self._post(event)
            with self._done:
                self.deliveries.append(record)
                self._done.notify_all()

    def _post(self, event: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(event["payload"]).encode()
        stamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "X-Prolific-Request-Timestamp": stamp,
            "X-Prolific-Request-Signature": sign(event["secret"], stamp, body),
            "X-Timestamp": stamp,
            "X-Event-ID": event["event_id"],
        }
        record = {**event, "body": body, "headers": headers, "status": None, "error": None}
        del record["secret"]
        parts = urlsplit(event["url"])
        kind = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        try:  # http.client, not urllib: headers go out spelled as Prolific spells them
            connection = kind(parts.netloc, timeout=5)
            try:
                target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                connection.request("POST", target, body, headers)
                record["status"] = connection.getresponse().status
            finally:
                connection.close()
        except (OSError, ValueError, HTTPException) as exc:
            record["error"] = str(exc)
        return record


def route(method: str, path: str) -> tuple[str, dict[str, str], int]:
    """The operation for ``method path`` (a missing trailing slash is tolerated)."""
    path = path if path.endswith("/") else path + "/"
    known = False
    for verb, pattern, name, ok in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if verb == method:
                return name, match.groupdict(), ok
            known = True
    if known:
        raise ProlificError(405, f'Method "{method}" not allowed.')
    raise ProlificError(404, "Not found.")


class Handler(BaseHTTPRequestHandler):
    """One request to the fake: the injected failures, then the API or the participant site."""

    server_version = "FakeProlific/1"

    @property
    def fake(self) -> FakeProlific:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base signature
        pass  # quiet: tests read ``calls`` instead

    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        is_api = parts.path.startswith(API_ROOT)
        plan = self.fake.intercept(method, parts.path)
        if plan.fail is not None:
            return self._reply(*self._error(plan.fail, is_api))
        if plan.hold_before is not None:
            plan.hold_before.block()
        if is_api:
            reply = self._api(method, parts.path, query, raw)
        else:
            reply = self._site(method, parts.path, query)
        if plan.hold_after is not None:
            plan.hold_after.block()
        if plan.drop:
            self.close_connection = True  # acted, and the caller never hears
            return None
        self._reply(*reply)

    def _api(
        self, method: str, path: str, query: dict[str, str], raw: bytes
    ) -> tuple[int, bytes, str, dict]:
        try:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme != "Token" or not token.strip():
                raise ProlificError(401, "Authentication credentials were not provided.")
            name, params, ok = route(method, path)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise ProlificError(400, f"JSON parse error - {exc}") from None
            host = self.headers.get("Host")
            base = f"http://{host}" if host else self.fake.url
            with self.fake.lock:
                payload = self.fake.api(name, Call(params, query, body, path, base))
                data = b"" if ok == 204 else json.dumps(payload).encode()
        except ProlificError as exc:
            return self._error(exc, True)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a malformed body
            return self._error(ProlificError(400, f"Bad request: {exc!r}"), True)
        return ok, data, "application/json", {}

    def _site(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes, str, dict]:
        try:
            if method != "GET":
                raise ProlificError(405, f"{method} is not served here.")
            start = re.fullmatch(r"/studies/([^/]+)/start/?", path)
            if start:
                page = self.fake.participant_start(start[1], query.get("PROLIFIC_PID"))
            elif path.rstrip("/") == "/submissions/complete":
                page = self.fake.participant_complete(self._session(query), query.get("cc", ""))
            elif path.rstrip("/") == "/submissions/return":
                page = self.fake.participant_return(self._session(query))
            elif path == "/":
                return 200, self._index(), _HTML, {}
            else:
                raise ProlificError(404, "Not found.")
        except ProlificError as exc:
            return self._error(exc, False)
        return page.status, _html(page.message, page.submission_status), _HTML, page.headers

    def _session(self, query: dict[str, str]) -> str | None:
        """The submission id from the session cookie, else from ``?session=``."""
        try:
            morsel = SimpleCookie(self.headers.get("Cookie") or "").get(SESSION_COOKIE)
        except CookieError:
            morsel = None
        return morsel.value if morsel is not None else query.get("session")

    def _index(self) -> bytes:
        with self.fake.lock:
            rows = "".join(
                f"<li>{html.escape(s['name'])} ({s['status']}): "
                f"<a href='/studies/{s['id']}/start?PROLIFIC_PID=P1'>start as P1</a></li>"
                for s in self.fake.studies.values()
            )
        page = f"<!doctype html><title>Fake Prolific</title><h1>Fake Prolific</h1><ul>{rows}</ul>"
        return page.encode()

    def _error(self, exc: ProlificError, is_api: bool) -> tuple[int, bytes, str, dict]:
        if is_api:
            return exc.status, json.dumps(exc.body()).encode(), "application/json", exc.headers
        return exc.status, _html(str(exc)), _HTML, exc.headers

    def _reply(self, status: int, body: bytes, content_type: str, headers: dict) -> None:
        try:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller went away (a test killed it while the request was held)


def _html(message: str, status: str | None = None) -> bytes:
    line = f"<p>Status: <strong id='status'>{html.escape(status)}</strong></p>" if status else ""
    return (
        "<!doctype html><title>Fake Prolific</title><h1>Fake Prolific</h1>"
        f"<p id='message'>{html.escape(message)}</p>{line}"
    ).encode()
