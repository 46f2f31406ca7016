"""What every request passes before a view: the request guard and the bounded JSON parser.

The guard refuses, before anything reads the body or touches the database, a request whose body
the server would not read in full (any Transfer-Encoding, a length that is not a number)
and any control character in the path, the query string or a form body (PostgreSQL cannot
store NUL, and none belongs in a key, an id or a label). The parser refuses JSON nested deeper
than :data:`MAX_JSON_DEPTH` before parsing it, and control characters or lone surrogates in any
string after. Each refusal is a 4xx in the project's one error shape, ``{"error", "detail",
"hint"}`` (JSON for the APIs, the message page otherwise): never a 500, never a half-read body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32
# C0 controls and DEL; forms and JSON may carry tab, newline and carriage return (textareas).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Refusal(Exception):
    """A request refused at the edge: HTTP status, stable code and a message."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _check_text(value: str, where: str, pattern: re.Pattern[str] = _CONTROL) -> None:
    if pattern.search(value):
        raise Refusal(400, "control_character", f"The {where} holds a control character.")


def check_request(request: HttpRequest) -> None:
    """Raise :class:`Refusal` for a request no view should see (see the module docstring)."""
    meta = request.META
    if meta.get("HTTP_TRANSFER_ENCODING"):  # chunked (or worse): Django would read nothing
        raise Refusal(411, "length_required", "Send the body with a Content-Length header.")
    length = meta.get("CONTENT_LENGTH") or ""
    if length and not length.isdigit():
        raise Refusal(400, "bad_length", "The Content-Length header is not a number.")
    _check_text(request.path, "address")
    _check_text(meta.get("QUERY_STRING", ""), "address")
    for key, values in request.GET.lists():  # percent-encoded characters, decoded
        for value in (key, *values):
            _check_text(value, "address")
    content_type = meta.get("CONTENT_TYPE", "")
    if request.method == "POST" and content_type.startswith(_FORM_TYPES):
        request.body  # noqa: B018 — read once and keep: parsing the form must not use it up
        for key, values in request.POST.lists():
            for value in (key, *values):
                _check_text(value, "form", _CONTROL_IN_TEXT)


def refusal_response(request: HttpRequest, refusal: Refusal) -> HttpResponse:
    """The refusal as JSON under ``/api/``, else as the message page; never cached."""
    body = {"error": refusal.code, "detail": refusal.detail, "hint": ""}
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(body, status=refusal.status)
    else:
        context = {
            "heading": "This request cannot be processed",
            "message": refusal.detail,
            "hint": "Please use the link you were given.",
            "code": refusal.code,
        }
        html = render_to_string("annotate/message.html", context)
        response = HttpResponse(html, status=refusal.status)
    response["Cache-Control"] = "no-store"
    return response


class RequestGuard:
    """Middleware: :func:`check_request` before everything else (first in ``MIDDLEWARE``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_request(request)
        except Refusal as refusal:
            return refusal_response(request, refusal)
        return self.get_response(request)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counted without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _check_strings(value: Any) -> None:
    """Refuse control characters (but tab, newline, CR) and lone surrogates in any string."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _CONTROL_IN_TEXT.search(item):
                raise ParseError("A string in the body holds a control character.")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError("A string in the body is not valid Unicode.") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser behind a size and a depth limit, with clean strings only."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.BLINDSPOT_WORKER_MAX_BODY
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(f"The body is larger than {limit} bytes.")
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise ParseError(f"The body is nested deeper than {MAX_JSON_DEPTH} levels.")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from None
        _check_strings(data)
        return data
