"""The Prolific API client: token auth, paging, careful retries, one audit row per request.

``PROLIFIC_API_URL`` (default ``https://api.prolific.com/api/v1/``) and ``PROLIFIC_API_TOKEN``
come from the settings. Reads (GET) are retried on connection errors, 429 and 5xx. Writes are
retried only when they certainly did not reach Prolific (a refused connection, 429, 503 before
acting); a write whose answer was lost raises :class:`ProlificError` with ``uncertain`` set, and
the caller's stored intent makes the next run look the remote state up instead of repeating it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin

import requests
from django.conf import settings
from django.db import DatabaseError

from annotate.models import Study
from annotate.prolific.models import ProlificCall
from robustness.errors import BlindspotError

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.prolific.com/api/v1/"
DEFAULT_APP_URL = "https://app.prolific.com"
MAX_ATTEMPTS = 4
BASE_DELAY_S = 0.5
MAX_DELAY_S = 8.0
MAX_PAGES = 10_000
TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
SAFE_TO_REPEAT = frozenset({429, 502, 503, 504})  # refused before acting: a write may be resent


class ProlificError(BlindspotError):
    """A failed Prolific request, one line. ``uncertain``: a write whose answer was lost (it may
    have been carried out); ``status`` is Prolific's HTTP status (0: no answer)."""

    code = "prolific_error"

    def __init__(
        self, message: str, *, http_status: int = 0, uncertain: bool = False, detail: Any = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.uncertain = uncertain
        self.detail = detail


def api_url() -> str:
    """The API base, ending in ``/``."""
    url = (getattr(settings, "PROLIFIC_API_URL", "") or DEFAULT_API_URL).strip()
    return url if url.endswith("/") else url + "/"


def app_url() -> str:
    """The participant site (where a finished participant is sent), without a trailing ``/``."""
    return (getattr(settings, "PROLIFIC_APP_URL", "") or DEFAULT_APP_URL).strip().rstrip("/")


def is_local_endpoint() -> bool:
    """Whether the API is on this machine (``manage.py prolific_endpoint``): no real money."""
    host = requests.utils.urlparse(api_url()).hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"}


def mode_label() -> str:
    """LOCAL (the fake endpoint) or LIVE, in capitals, for every line that precedes spending."""
    return "LOCAL" if is_local_endpoint() else "LIVE"


def backoff_delay(retry: int) -> float:
    """Exponential backoff with full jitter before retry number ``retry`` (1, 2, …)."""
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (retry - 1)))


def _error_text(response: requests.Response) -> tuple[str, Any]:
    """Prolific's error envelope (``{"error": {"title", "detail"}}``) as one line, and detail."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300] or response.reason, None
    error = body.get("error", body) if isinstance(body, dict) else body
    if not isinstance(error, dict):
        return str(error)[:300], error
    detail = error.get("detail", "")
    if isinstance(detail, dict):
        text = "; ".join(
            f"{field}: {' '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for field, msgs in detail.items()
        )
    elif isinstance(detail, list):
        text = "; ".join(map(str, detail))
    else:
        text = str(detail)
    title = str(error.get("title", "") or "")
    return " — ".join(t for t in (title, text) if t)[:500] or response.reason, detail


class ProlificClient:
    """One Prolific workspace's API (thread-safe; cheap to build)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token: str | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.base_url = base_url or api_url()
        self.token = token if token is not None else getattr(settings, "PROLIFIC_API_TOKEN", "")
        self.session = session or requests.Session()
        self.sleep = sleep
        self.max_attempts = max_attempts

    # --- plumbing ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        study: Study | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """``method path`` with token auth; the decoded JSON (None for an empty answer)."""
        if not self.token:
            raise ProlificError(
                "PROLIFIC_API_TOKEN is not set: create a token in Prolific's workspace settings "
                "and export it (docs/prolific.md)"
            )
        url = path if path.startswith("http") else urljoin(self.base_url, path.lstrip("/"))
        write = method != "GET"
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    timeout=TIMEOUT,
                    headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
                )
            except requests.ConnectionError as exc:
                # A refused or unresolved connection never reached Prolific; anything else
                # (a reset, a dropped answer) may have been acted upon.
                reached = not isinstance(exc, requests.ConnectTimeout) and not _refused(exc)
                if (not write or not reached) and attempt < self.max_attempts:
                    self.sleep(backoff_delay(attempt))
                    continue
                error = ProlificError(
                    f"Prolific {method} {path}: "
                    + (
                        "the connection dropped before the answer: it may have been done"
                        if write and reached
                        else f"cannot reach {self.base_url} (network down, or PROLIFIC_API_URL "
                        "wrong?)"
                    ),
                    uncertain=write and reached,
                )
            except requests.Timeout:
                if not write and attempt < self.max_attempts:
                    self.sleep(backoff_delay(attempt))
                    continue
                error = ProlificError(
                    f"Prolific {method} {path}: no answer in time"
                    + (": it may have been done" if write else ""),
                    uncertain=write,
                )
            else:
                status = response.status_code
                if status < 400:
                    self._audit(
                        method, path, json or params, study, True, status, "", attempt, started
                    )
                    if status == 204 or not response.content:
                        return None
                    try:
                        return response.json()
                    except ValueError:
                        return response.text
                retriable = status in SAFE_TO_REPEAT or (not write and status >= 500)
                if retriable and attempt < self.max_attempts:
                    wait = response.headers.get("Retry-After", "")
                    self.sleep(
                        min(MAX_DELAY_S, float(wait)) if wait.isdigit() else backoff_delay(attempt)
                    )
                    continue
                text, detail = _error_text(response)
                hint = " (check PROLIFIC_API_TOKEN)" if status in (401, 403) else ""
                error = ProlificError(
                    f"Prolific {method} {path}: {text} [HTTP {status}]{hint}",
                    http_status=status,
                    uncertain=write and status >= 500 and status not in SAFE_TO_REPEAT,
                    detail=detail,
                )
            self._audit(
                method,
                path,
                json or params,
                study,
                False,
                error.http_status or None,
                error.message,
                attempt,
                started,
            )
            raise error

    def _audit(
        self,
        method: str,
        path: str,
        params: Any,
        study: Study | None,
        ok: bool,
        status: int | None,
        message: str,
        attempts: int,
        started: float,
    ) -> None:
        """The ``ProlificCall`` row; a failing audit write is logged, never raised."""
        try:
            ProlificCall.objects.create(
                method=method,
                path=path[:300],
                study=study if study is not None and study.pk else None,
                params=_shorten(params),
                ok=ok,
                status_code=status,
                message=message,
                attempts=min(attempts, 32767),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        except DatabaseError:
            logger.exception("could not audit Prolific %s %s", method, path)

    def pages(
        self, path: str, *, study: Study | None = None, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every result of a paged list, following ``_links.next`` to the end."""
        url: str | None = path
        for _ in range(MAX_PAGES):
            if url is None:
                return
            body = self.request("GET", url, study=study, params=params if url == path else None)
            yield from (body or {}).get("results", [])
            url = (((body or {}).get("_links") or {}).get("next") or {}).get("href")
        raise ProlificError(f"Prolific GET {path}: more than {MAX_PAGES} pages")

    # --- the calls Blindspot makes ------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self.request("GET", "users/me/")

    def studies(self, *, state: str | None = None) -> Iterator[dict[str, Any]]:
        """The workspace's studies (Prolific filters the list by state only)."""
        return self.pages("studies/", params={"state": state} if state else None)

    def create_study(self, body: dict[str, Any], *, study: Study | None = None) -> dict[str, Any]:
        return self.request("POST", "studies/", study=study, json=body)

    def get_study(self, study_id: str, *, study: Study | None = None) -> dict[str, Any]:
        return self.request("GET", f"studies/{study_id}/", study=study)

    def update_study(
        self, study_id: str, fields: dict[str, Any], *, study: Study | None = None
    ) -> dict[str, Any]:
        return self.request("PATCH", f"studies/{study_id}/", study=study, json=fields)

    def transition_study(
        self, study_id: str, action: str, *, study: Study | None = None
    ) -> dict[str, Any]:
        return self.request(
            "POST", f"studies/{study_id}/transition/", study=study, json={"action": action}
        )

    def submissions(self, study_id: str, *, study: Study | None = None) -> Iterator[dict[str, Any]]:
        return self.pages(f"studies/{study_id}/submissions/", study=study)

    def get_submission(self, submission_id: str, *, study: Study | None = None) -> dict[str, Any]:
        return self.request("GET", f"submissions/{submission_id}/", study=study)

    def transition_submission(
        self,
        submission_id: str,
        action: str,
        *,
        message: str = "",
        category: str = "",
        study: Study | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"action": action}
        if action == "REJECT":
            body.update(message=message, rejection_category=category)
        return self.request(
            "POST", f"submissions/{submission_id}/transition/", study=study, json=body
        )

    def bulk_approve(
        self, study_id: str, submission_ids: list[str], *, study: Study | None = None
    ) -> Any:
        return self.request(
            "POST",
            "submissions/bulk-approve/",
            study=study,
            json={"study_id": study_id, "submission_ids": submission_ids},
        )

    def setup_bonuses(
        self,
        study_id: str,
        rows: Iterable[tuple[str, Decimal]],
        *,
        study: Study | None = None,
    ) -> dict[str, Any]:
        """Set up (not pay) a bulk bonus: ``rows`` of (submission id, amount in major units)."""
        csv = "\n".join(f"{ident},{amount:.2f}" for ident, amount in rows)
        return self.request(
            "POST",
            "submissions/bonus-payments/",
            study=study,
            json={"study_id": study_id, "csv_bonuses": csv},
        )

    def pay_bonuses(self, bulk_id: str, *, study: Study | None = None) -> Any:
        """Pay a bulk bonus. NOT idempotent: every call pays again; callers guard it."""
        return self.request("POST", f"bulk-bonus-payments/{bulk_id}/pay/", study=study)

    def send_message(
        self, recipient_id: str, study_id: str, body: str, *, study: Study | None = None
    ) -> Any:
        return self.request(
            "POST",
            "messages/",
            study=study,
            json={"recipient_id": recipient_id, "study_id": study_id, "body": body},
        )


def _refused(exc: requests.ConnectionError) -> bool:
    """Whether the connection was never made (refused, unresolved): nothing was sent."""
    text = repr(exc)
    return any(
        marker in text
        for marker in ("NewConnectionError", "Connection refused", "NameResolutionError")
    )


def _shorten(params: Any) -> Any:
    """What the audit keeps of a request body: long strings cut, a CSV as its line count."""
    if isinstance(params, dict):
        out = {}
        for key, value in params.items():
            if key == "csv_bonuses" and isinstance(value, str):
                out[key] = f"{len(value.splitlines())} rows"
            elif isinstance(value, str) and len(value) > 200:
                out[key] = value[:200] + "…"
            else:
                out[key] = value
        return out
    return {} if params is None else {"value": str(params)[:200]}


def get_client() -> ProlificClient:
    """A client for the configured endpoint and token."""
    return ProlificClient()
