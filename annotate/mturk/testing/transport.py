"""The HTTP side of the in-memory MTurk: MTurk's JSON 1.1 API on ``POST /`` and a tiny worker
site (``GET /accept``, ``POST /mturk/externalSubmit``, ``GET /`` listing the HITs)."""

from __future__ import annotations

import html
import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from annotate.mturk.testing.endpoint import FakeMTurk

TARGET_PREFIX = "MTurkRequesterServiceV20170117."


class FakeError(Exception):
    """An error response: ``kind`` is the ``__type`` (RequestError, ServiceFault, …)."""

    def __init__(
        self, message: str, code: str = "", kind: str = "RequestError", status: int = 400
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.kind, self.status = message, code, kind, status

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"__type": self.kind, "Message": self.message}
        if self.code:
            out["TurkErrorCode"] = self.code
        return out


class Dropped(Exception):  # noqa: N818 — an event, not an error answer
    """The connection closes without an answer (the call may or may not have acted)."""


class Handler(BaseHTTPRequestHandler):
    """One request to the fake: the JSON API, the worker site's accept and externalSubmit."""

    server_version = "FakeMTurk/1"

    @property
    def fake(self) -> FakeMTurk:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base signature
        pass  # quiet: tests and trials read the MTurkCall audit instead

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/x-amz-json-1.1")

    def do_POST(self) -> None:  # noqa: N802 — http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if path == "/mturk/externalSubmit":
            return self._external_submit(raw)
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            return self._json(400, {"__type": "UnknownOperationException", "Message": target})
        try:
            params = json.loads(raw or b"{}")
            self._json(200, self.fake.handle(target[len(TARGET_PREFIX) :], params))
        except Dropped:
            self.close_connection = True  # no status line, no body: the client hears nothing
        except FakeError as exc:
            self._json(exc.status, exc.body())
        except (ValueError, KeyError, TypeError) as exc:
            self._json(
                400,
                FakeError(f"bad request: {exc}", "AWS.MechanicalTurk.InvalidParameterValue").body(),
            )

    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/accept":
            try:
                with self.fake.lock:
                    hit_id, worker_id = query["hitId"], query["workerId"]
                    assignment_id = self.fake.accept(hit_id, worker_id)
                    location = self.fake.external_url(hit_id, assignment_id, worker_id)
            except (KeyError, FakeError) as exc:
                return self._send(
                    400, f"cannot accept: {exc}".encode(), "text/plain; charset=utf-8"
                )
            return self._send(302, b"", "text/plain", {"Location": location})
        if parts.path == "/":
            with self.fake.lock:
                rows = "".join(
                    f"<li>{h['HITId']} {html.escape(h['Title'])}: "
                    f"{self.fake._counts(h)['NumberOfAssignmentsAvailable']} available — "
                    f"<code>/accept?hitId={h['HITId']}&amp;workerId=A1TESTWORKER</code></li>"
                    for h in self.fake.hits.values()
                )
            page = f"<!doctype html><title>Fake MTurk</title><h1>Fake MTurk</h1><ul>{rows}</ul>"
            return self._send(200, page.encode(), "text/html; charset=utf-8")
        self._send(404, b"not found", "text/plain")

    def _external_submit(self, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        with self.fake.lock:
            a = self.fake.assignments.get(form.get("assignmentId", ""))
            if a is None:
                return self._send(400, b"unknown assignmentId", "text/plain")
            answer = {k: v for k, v in form.items() if k != "assignmentId"}
            self.fake.submit(a["HITId"], a["AssignmentId"], a["WorkerId"], answer=answer)
        self._send(
            200, b"<!doctype html><p>Submitted to (fake) MTurk.</p>", "text/html; charset=utf-8"
        )
