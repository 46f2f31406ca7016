"""Limits on grabbing work: how many leases one client, and one study, may start per minute.

DRF's rate throttles over Django's cache (Redis when ``REDIS_URL`` is set, so every server
process counts together). Rates come from ``settings.BLINDSPOT_THROTTLE_RATES`` at each request
(so a deployment, or a test, can change them); the client is its address, as
``REST_FRAMEWORK["NUM_PROXIES"]`` says to read it behind a proxy. The worker API applies them
as throttle classes; the start form (a plain page) through :func:`lease_throttle_wait`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle


class _Rate(SimpleRateThrottle):
    """A rate throttle whose rate is read from the settings at each request."""

    def get_rate(self) -> str | None:
        return settings.BLINDSPOT_THROTTLE_RATES.get(self.scope)

    def __init__(self) -> None:  # SimpleRateThrottle reads the rate in __init__
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)


class ClientLeaseThrottle(_Rate):
    """Lease requests (start) per client address."""

    scope = "lease"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class StudyLeaseThrottle(_Rate):
    """Lease requests per study, whoever sends them."""

    scope = "study"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        match = getattr(request, "resolver_match", None)
        key = match.kwargs.get("study_key") if match else None
        return self.cache_format % {"scope": self.scope, "ident": key} if key else None


class ClientWorkThrottle(_Rate):
    """Every other worker API request (items, autosaves, submit) per client address."""

    scope = "work"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


LEASE_THROTTLES: tuple[type[_Rate], ...] = (ClientLeaseThrottle, StudyLeaseThrottle)


def lease_throttle_wait(request: HttpRequest) -> float | None:
    """For a page that leases: None when the request may go on, else seconds to wait. The
    throttles are asked in order and stop at the first refusal (as the worker API does)."""
    for throttle_class in LEASE_THROTTLES:
        throttle = throttle_class()
        if not throttle.allow_request(request, None):
            return throttle.wait() or 1.0
    return None
