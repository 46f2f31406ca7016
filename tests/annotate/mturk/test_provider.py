"""Recruitment providers are looked up by ``Study.provider``: local hands out the link, MTurk
goes through the requester code, an unknown name is a clear error."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from annotate.mturk.client import get_client
from annotate.mturk.provider import MTurkProvider
from annotate.providers.local import LocalProvider
from annotate.providers.registry import UnknownProvider, provider_for
from tests.annotate.mturk.stubs import PUBLIC, add_hit, fake_aws, mturk_settings, mturk_study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path, settings):
    fake_aws(monkeypatch, tmp_path)
    mturk_settings(settings)


def test_the_provider_follows_the_study():
    study = mturk_study(n_assignments=1)
    assert isinstance(provider_for(study), LocalProvider)
    study.provider = "mturk"
    assert isinstance(provider_for(study), MTurkProvider)
    study.provider = "clickworker"
    with pytest.raises(UnknownProvider, match="no recruitment provider 'clickworker' is installed"):
        provider_for(study)


def test_local_publish_is_the_study_link_and_the_rest_say_there_is_nothing_to_do():
    study = mturk_study(n_assignments=1)
    local = provider_for(study)
    assert local.publish(study=study).lines == [f"Send workers this link: {PUBLIC}/s/{study.key}/"]
    for result in (local.sync(study=study), local.approve(study=study), local.expire(study=study)):
        assert result.ok and result.lines


def test_mturk_status_through_the_provider():
    study = mturk_study(n_assignments=2)
    add_hit(study, 0, size=2)
    study.provider = "mturk"
    with Stubber(get_client()) as stub:
        stub.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
        result = provider_for(study).status(study=study)
    assert result.ok and "balance: $10000.00 available" in result.lines
