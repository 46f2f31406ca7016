"""System checks of the MTurk settings: found by ``manage.py check`` (and at start), not at
publish time."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _url(value: str) -> tuple[str, str] | None:
    """(scheme, host) of an http(s) URL, else None."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname:
        return parts.scheme, parts.hostname
    return None


@register(Tags.compatibility)
def mturk_settings(app_configs: Any, **kwargs: Any) -> list[Warning | Error]:
    """PUBLIC_BASE_URL and MTURK_ENDPOINT_URL are usable for MTurk's mode."""
    problems: list[Warning | Error] = []
    endpoint = getattr(settings, "MTURK_ENDPOINT_URL", None) or ""
    local_endpoint = False
    if endpoint:
        parsed = _url(endpoint)
        if parsed is None:
            problems.append(
                Error(
                    f"MTURK_ENDPOINT_URL={endpoint!r} is not an http(s) URL",
                    hint="e.g. http://127.0.0.1:8765 for `manage.py mturk_endpoint`",
                    id="mturk.E001",
                )
            )
        else:
            local_endpoint = parsed[1] in LOOPBACK
    base = getattr(settings, "PUBLIC_BASE_URL", "") or ""
    live = not getattr(settings, "MTURK_SANDBOX", True)
    if not base:
        if live:  # configured for real money, yet HITs could not send anyone here
            problems.append(
                Warning(
                    "MTURK_SANDBOX=0 but PUBLIC_BASE_URL is not set: publishing will be refused",
                    hint="the https address where MTurk's workers reach this server",
                    id="mturk.W001",
                )
            )
        return problems
    parsed = _url(base)
    if parsed is None:
        problems.append(Error(f"PUBLIC_BASE_URL={base!r} is not an http(s) URL", id="mturk.E002"))
    elif parsed[0] != "https" and not local_endpoint:
        problems.append(
            Warning(
                f"PUBLIC_BASE_URL={base!r} is not https: MTurk frames only https pages",
                id="mturk.W002",
            )
        )
    elif live and parsed[1] in LOOPBACK:
        problems.append(
            Error(
                f"live MTurk (MTURK_SANDBOX=0) cannot send workers to {base}",
                hint="set PUBLIC_BASE_URL to this server's public https address",
                id="mturk.E003",
            )
        )
    return problems
