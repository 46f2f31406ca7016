"""System checks of the human-study settings (storages, worker limits, framing origins)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.utils.module_loading import import_string

REQUIRED_STORAGES = ("default", "artifacts")
THROTTLE_RATE = re.compile(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)")


@register(Tags.compatibility)
def storage_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    """Stimuli need the ``default`` storage and checkpoints ``artifacts``, each importable."""
    problems = []
    storages = getattr(settings, "STORAGES", {})
    for alias in REQUIRED_STORAGES:
        backend = storages.get(alias, {}).get("BACKEND")
        if not backend:
            problems.append(
                Error(
                    f"STORAGES has no {alias!r} storage",
                    hint="BLINDSPOT_STORAGES may replace aliases but not remove them",
                    id="annotate.E001",
                )
            )
            continue
        try:
            import_string(backend)
        except ImportError as exc:
            problems.append(
                Error(
                    f"the {alias!r} storage backend {backend} cannot be imported: {exc}",
                    hint="S3 needs the s3 extra: pip install -e '.[s3]'",
                    id="annotate.E002",
                )
            )
    return problems


@register(Tags.security)
def worker_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    """A positive request-size limit, and frame ancestors that are origins."""
    problems = []
    limit = settings.BLINDSPOT_WORKER_MAX_BODY
    if limit <= 0:
        problems.append(
            Error(f"BLINDSPOT_WORKER_MAX_BODY must be positive, got {limit}", id="annotate.E003")
        )
    for scope, rate in settings.BLINDSPOT_THROTTLE_RATES.items():
        if not (isinstance(rate, str) and THROTTLE_RATE.fullmatch(rate)):
            problems.append(
                Error(
                    f"the {scope} throttle rate {rate!r} is not N/second, /minute, /hour or /day",
                    hint="e.g. BLINDSPOT_THROTTLE_LEASE=20/min",
                    id="annotate.E005",
                )
            )
    for origin in settings.BLINDSPOT_FRAME_ANCESTORS:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            problems.append(
                Error(
                    f"BLINDSPOT_FRAME_ANCESTORS holds {origin!r}, which is not an origin",
                    hint="scheme://host[:port], e.g. https://app.prolific.com",
                    id="annotate.E004",
                )
            )
    return problems
