"""Test tooling that speaks Prolific's protocol, for tests and local trials (never production).

Modules: ``endpoint`` (the in-memory researcher API and participant site, :class:`FakeProlific`)
and ``transport`` (its HTTP side, injected failures, signed webhooks). ``manage.py
prolific_endpoint`` serves it.
"""

from __future__ import annotations

from annotate.prolific.testing.endpoint import FakeProlific

__all__ = ["FakeProlific"]
