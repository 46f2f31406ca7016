"""The worker pages' HTTP headers: no caching, no referrer, a strict CSP that frames by name.

Every worker page may run inside a recruiting site's iframe with cookies blocked, so framing is
allowed by CSP ``frame-ancestors`` (never X-Frame-Options) to ourselves, the sites in
``settings.BLINDSPOT_FRAME_ANCESTORS`` and the study's recruitment provider. Scripts and styles
come only from our own files.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.clickjacking import xframe_options_exempt


def content_security_policy(
    *, frame_ancestors: tuple[str, ...] = (), form_action: tuple[str, ...] = ()
) -> str:
    """The worker pages' CSP: our own files only, framed by ourselves and the allowed sites
    (plus ``frame_ancestors``), forms posting to ourselves (plus ``form_action``)."""
    ancestors = " ".join(
        dict.fromkeys(["'self'", *settings.BLINDSPOT_FRAME_ANCESTORS, *frame_ancestors])
    )
    actions = " ".join(dict.fromkeys(["'self'", *form_action]))
    return (
        f"frame-ancestors {ancestors}; default-src 'self'; img-src 'self' data:; "
        f"script-src 'self'; style-src 'self'; base-uri 'none'; form-action {actions}"
    )


def allow(
    response: HttpResponse,
    *,
    frame_ancestors: tuple[str, ...] = (),
    form_action: tuple[str, ...] = (),
) -> HttpResponse:
    """Widen the CSP of one response: more sites that may frame it, or that its forms post to."""
    csp: dict[str, tuple[str, ...]] = getattr(response, "csp", {})
    response.csp = {  # type: ignore[attr-defined]
        "frame_ancestors": (*csp.get("frame_ancestors", ()), *frame_ancestors),
        "form_action": (*csp.get("form_action", ()), *form_action),
    }
    return response


def worker_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Give a worker view its headers (what :func:`allow` widened included)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        response["Content-Security-Policy"] = content_security_policy(
            **getattr(response, "csp", {})
        )
        return response

    return xframe_options_exempt(wrapped)
