"""The worker views reach providers only through the interface: no module of annotate.work
imports a provider app, directly or through another module (checked on the import graph)."""

from __future__ import annotations

import grimp
import pytest
from django.apps import apps


def provider_apps() -> list[str]:
    return [c.name for c in apps.get_app_configs() if getattr(c, "console_urls", None)]


@pytest.mark.parametrize("app", provider_apps())
def test_worker_modules_import_no_provider_app(app):
    graph = grimp.build_graph("annotate")
    for module in sorted(m for m in graph.modules if m.startswith("annotate.work")):
        chain = graph.find_shortest_chain(importer=module, imported=app)
        assert chain is None, f"{module} reaches {app} through {' -> '.join(chain)}"


def test_both_paid_providers_are_installed():
    assert {"annotate.mturk", "annotate.prolific"} <= set(provider_apps())
