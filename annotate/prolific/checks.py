"""System checks of the Prolific settings: found by ``manage.py check`` (and at start)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


def _rate(name: str) -> Error | None:
    value = getattr(settings, name, "0")
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        rate = Decimal(-1)
    if not Decimal(0) <= rate < Decimal(5):
        return Error(f"{name}={value!r} is not a rate such as 0.333", id="prolific.E002")
    return None


@register(Tags.compatibility)
def prolific_settings(app_configs: Any, **kwargs: Any) -> list[Warning | Error]:
    """The API and app URLs are http(s) URLs, the rates are rates, the minimum wage a number."""
    problems: list[Warning | Error] = []
    for name in ("PROLIFIC_API_URL", "PROLIFIC_APP_URL"):
        value = getattr(settings, name, "") or ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                Error(
                    f"{name}={value!r} is not an http(s) URL",
                    hint="unset it for Prolific's own, or point it at `prolific_endpoint`",
                    id="prolific.E001",
                )
            )
    problems += [e for e in (_rate("PROLIFIC_FEE_RATE"), _rate("PROLIFIC_VAT_RATE")) if e]
    for currency, value in (getattr(settings, "PROLIFIC_MIN_HOURLY", {}) or {}).items():
        try:
            Decimal(str(value))
        except InvalidOperation:
            problems.append(
                Error(
                    f"PROLIFIC_MIN_HOURLY[{currency}]={value!r} is not an amount",
                    id="prolific.E003",
                )
            )
    if getattr(settings, "PROLIFIC_API_TOKEN", "") and not getattr(
        settings, "PROLIFIC_WEBHOOK_SECRET", ""
    ):
        problems.append(
            Warning(
                "PROLIFIC_API_TOKEN is set but PROLIFIC_WEBHOOK_SECRET is not: submission changes "
                "arrive only when you run `prolific sync`",
                hint="create a hook secret on Prolific and set PROLIFIC_WEBHOOK_SECRET "
                "(docs/prolific.md)",
                id="prolific.W001",
            )
        )
    return problems
