"""The one boto3 MTurk client, and ``call``: retries, clear errors and an audit row per call.

Sandbox unless ``settings.MTURK_SANDBOX`` is False; ``settings.MTURK_ENDPOINT_URL`` overrides the
endpoint (a local endpoint). Credentials come from the standard AWS chain (environment, profile,
instance role); nothing here reads keys. botocore's own retries are off so that the attempt
counts in the audit are ours.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)
from django.conf import settings
from django.db import DatabaseError

from annotate.models import Study
from annotate.mturk.models import MTurkCall
from robustness.errors import BlindspotError

logger = logging.getLogger(__name__)

REGION = "us-east-1"  # MTurk exists only there
SANDBOX_ENDPOINT = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
LIVE_ENDPOINT = "https://mturk-requester.us-east-1.amazonaws.com"
RETRYABLE = frozenset({"ServiceFault", "ThrottlingException", "Throttling"})
MAX_ATTEMPTS = 4  # one call plus three retries
BASE_DELAY_S = 0.5  # backoff: uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**retry))
MAX_DELAY_S = 8.0
QUESTION_CHARS = 160  # how much of a Question XML the audit keeps
CLOSED_ON = dt.date(2026, 9, 30)  # "Amazon Mechanical Turk will permanently close on …"
CLOSURE_NOTICE = (
    "Amazon Mechanical Turk closed on 2026-09-30: recruit on Prolific instead "
    "(manage.py prolific publish; see docs/prolific.md). The MTurk sandbox and a local endpoint "
    "keep working for protocol tests."
)

_clients: dict[tuple[str | None, bool], BaseClient] = {}
_clients_lock = threading.Lock()


class MTurkError(BlindspotError):
    """A failed MTurk call, one line: ``code`` is MTurk's TurkErrorCode when it sent one."""

    def __init__(self, message: str, code: str = "", *, operation: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.operation = operation


def is_sandbox() -> bool:
    """Whether calls go to the sandbox (no real money): ``MTURK_SANDBOX``, default True."""
    return bool(getattr(settings, "MTURK_SANDBOX", True))


def mode_label(sandbox: bool | None = None) -> str:
    """SANDBOX or LIVE, in capitals, for every line that precedes spending."""
    return "SANDBOX" if (is_sandbox() if sandbox is None else sandbox) else "LIVE"


def endpoint_url() -> str:
    """The requester endpoint: ``MTURK_ENDPOINT_URL`` if set, else the mode's AWS endpoint."""
    override = getattr(settings, "MTURK_ENDPOINT_URL", None)
    return override or (SANDBOX_ENDPOINT if is_sandbox() else LIVE_ENDPOINT)


def is_local_endpoint() -> bool:
    """Whether the endpoint is on this machine (the fake endpoint): no real MTurk involved."""
    host = urlsplit(endpoint_url()).hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"}


def is_live_endpoint() -> bool:
    """Whether calls go to Amazon's live requester endpoint, which closed on 2026-09-30."""
    return urlsplit(endpoint_url()).hostname == urlsplit(LIVE_ENDPOINT).hostname


def worker_site(sandbox: bool | None = None) -> str:
    """Where workers see HITs in this mode."""
    sandbox = is_sandbox() if sandbox is None else sandbox
    return "https://workersandbox.mturk.com" if sandbox else "https://www.mturk.com"


def requester_site(sandbox: bool | None = None) -> str:
    """The requester website of this mode (to look at HITs by hand)."""
    sandbox = is_sandbox() if sandbox is None else sandbox
    return "https://requestersandbox.mturk.com" if sandbox else "https://requester.mturk.com"


def preview_url(group_id: str, *, sandbox: bool | None = None) -> str:
    """The worker-site preview of a HIT group (what a worker sees before accepting)."""
    return f"{worker_site(sandbox)}/mturk/preview?groupId={group_id}"


def build_client(*, interactive: bool = False) -> BaseClient:
    """A new boto3 ``mturk`` client for the configured mode and endpoint (botocore retries off).

    ``interactive`` clients, used while a worker waits for a page, give up after seconds.
    """
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=3 if interactive else 10,
        read_timeout=5 if interactive else 60,
        user_agent_extra="blindspot",
    )
    session = boto3.session.Session()
    return session.client("mturk", region_name=REGION, endpoint_url=endpoint_url(), config=config)


def get_client(*, interactive: bool = False) -> BaseClient:
    """The process's client for the configured endpoint, built once (clients are thread-safe)."""
    key = (endpoint_url(), interactive)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = build_client(interactive=interactive)
        return _clients[key]


def reset_clients() -> None:
    """Forget the cached clients (tests; after changing credentials in a long-lived process)."""
    with _clients_lock:
        _clients.clear()


def backoff_delay(retry: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter before retry number ``retry`` (1, 2, …)."""
    cap = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (retry - 1))
    return (rng or random).uniform(0, cap)


def call(
    client: BaseClient,
    operation: str,
    *,
    study: Study | None = None,
    sleep: Callable[[float], None] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    **params: Any,
) -> dict[str, Any]:
    """``client.<operation>(**params)`` with retries on ServiceFault/throttling, audited.

    Raises :class:`MTurkError` (one line, TurkErrorCode included) for anything that fails.
    """
    return _invoke(
        operation,
        lambda: getattr(client, operation)(**params),
        params=params,
        study=study,
        sleep=sleep,
        max_attempts=max_attempts,
    )


def pages(
    client: BaseClient,
    operation: str,
    *,
    study: Study | None = None,
    page_size: int = 100,
    sleep: Callable[[float], None] | None = None,
    **params: Any,
) -> Iterator[dict[str, Any]]:
    """The pages of a paginated operation, each one a ``call`` with ``MaxResults`` and MTurk's
    own ``NextToken`` (passed as MTurk wrote it: botocore's paginator would try to decode it).

    A page that fails after its retries raises :class:`MTurkError`; a retried page resumes
    from the last ``NextToken``, so no page is read twice.
    """
    token: str | None = None
    while True:
        page_params = {**params, "MaxResults": page_size, **({"NextToken": token} if token else {})}
        page = call(client, operation, study=study, sleep=sleep, **page_params)
        yield page
        token = page.get("NextToken")
        if not token:
            return


def _invoke(
    operation: str,
    fn: Callable[[], dict[str, Any]],
    *,
    params: dict[str, Any],
    study: Study | None,
    sleep: Callable[[float], None] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> dict[str, Any]:
    sleep = sleep or time.sleep
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            response = fn()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in RETRYABLE and attempt < max_attempts:
                sleep(backoff_delay(attempt))
                continue
            error = _client_error(operation, exc)
        except ParamValidationError as exc:
            text = " ".join(str(exc).split())
            error = MTurkError(f"MTurk {operation}: {text}", "ParamValidation", operation=operation)
        except NoCredentialsError:
            error = MTurkError(
                f"MTurk {operation}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; see docs/mturk.md)",
                "NoCredentials",
                operation=operation,
            )
        except EndpointConnectionError as exc:
            error = MTurkError(
                f"MTurk {operation}: cannot reach {exc.kwargs.get('endpoint_url', endpoint_url())}"
                " (network down, or MTURK_ENDPOINT_URL wrong?)",
                "EndpointConnection",
                operation=operation,
            )
        except BotoCoreError as exc:
            text = " ".join(str(exc).split())
            error = MTurkError(
                f"MTurk {operation}: {text}", type(exc).__name__, operation=operation
            )
        else:
            _audit(
                operation,
                params,
                study,
                ok=True,
                result=_summary(response),
                attempts=attempt,
                started=started,
            )
            return response
        _audit(
            operation,
            params,
            study,
            ok=False,
            code=error.code,
            message=error.message,
            attempts=attempt,
            started=started,
        )
        raise error


def _client_error(operation: str, exc: ClientError) -> MTurkError:
    """MTurk's error as one line: the message, then the TurkErrorCode (or the AWS code)."""
    error = exc.response.get("Error", {})
    aws_code = error.get("Code", "") or "ClientError"
    turk_code = exc.response.get("TurkErrorCode") or ""
    message = " ".join(str(error.get("Message") or "no message").split())
    code = turk_code or aws_code
    return MTurkError(f"MTurk {operation}: {message} [{code}]", code, operation=operation)


def _audit(
    operation: str,
    params: dict[str, Any],
    study: Study | None,
    *,
    ok: bool,
    attempts: int,
    started: float,
    code: str = "",
    message: str = "",
    result: dict[str, Any] | None = None,
) -> None:
    """Write the ``MTurkCall`` row; a failing audit write is logged, never raised (the call
    already happened and its result must still reach the caller)."""
    try:
        MTurkCall.objects.create(
            operation=operation,
            sandbox=is_sandbox(),
            study=study if study is not None and study.pk else None,
            params=_json_safe(_shorten(params)),
            ok=ok,
            error_code=code[:100],
            message=message,
            result=_json_safe(result or {}),
            attempts=min(attempts, 32767),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    except DatabaseError:
        logger.exception("could not write the MTurkCall audit row for %s", operation)


def _shorten(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    question = out.get("Question")
    if isinstance(question, str) and len(question) > QUESTION_CHARS:
        out["Question"] = question[:QUESTION_CHARS] + f"… ({len(question)} chars)"
    return out


def _summary(response: dict[str, Any]) -> dict[str, Any]:
    """A small result: top-level scalars, ids/status/counts of nested objects, list lengths."""
    out: dict[str, Any] = {}
    for key, value in response.items():
        if key == "ResponseMetadata":
            continue
        if isinstance(value, dict):
            out[key] = {
                k: v
                for k, v in value.items()
                if k.endswith(("Id", "Status"))
                or k.startswith("NumberOf")
                or k in ("MaxAssignments", "Reward", "Expiration")
            }
        elif isinstance(value, list):
            out[key] = len(value)
        else:
            out[key] = value
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return value if len(value) <= 1000 else value[:1000] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)
