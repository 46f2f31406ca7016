"""The provider registry: what is installed, and a study whose provider is not."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.models import Study, Worker
from annotate.providers import registry
from annotate.providers.base import RecruitmentProvider
from annotate.providers.registry import UnknownProvider
from tests.annotate.factories import make_study

pytestmark = pytest.mark.django_db


def test_installed_providers_give_the_field_choices():
    names = [name for name, _ in registry.provider_choices()]
    assert names[0] == "local" and set(names) == {p.name for p in registry.providers()}
    sources = dict(registry.worker_source_choices())
    assert {"panel", "anonymous"} <= set(sources)
    assert Study._meta.get_field("provider").choices == registry.provider_choices()
    assert Worker._meta.get_field("source").choices == registry.worker_source_choices()


def test_a_new_provider_registers_and_is_looked_up_by_the_study(monkeypatch):
    class Panel(RecruitmentProvider):
        name, label, worker_source = "panel-x", "Panel X", "panel-x"

    monkeypatch.setattr(registry, "_PROVIDERS", dict(registry._PROVIDERS))
    registry.register(Panel())
    study = make_study(provider="panel-x")
    assert isinstance(registry.provider_for(study), Panel)
    assert ("panel-x", "Panel X") in registry.provider_choices()


def test_a_study_of_a_provider_that_is_not_installed_is_a_clear_refusal(client):
    study = make_study(provider="gone")
    with pytest.raises(UnknownProvider, match="no recruitment provider 'gone' is installed"):
        registry.provider_for(study)
    page = client.get(reverse("annotate:study-entry", args=[study.key]))
    assert page.status_code == 503 and "gone" in page.content.decode()
    api = client.post(reverse("annotate:api-lease", args=[study.key]), {}, "application/json")
    assert api.status_code == 503 and api.json()["error"] == "unknown_provider"
