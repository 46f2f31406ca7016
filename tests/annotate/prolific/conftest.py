"""A local Prolific (the in-memory endpoint) and the settings that point our client at it."""

from __future__ import annotations

import pytest

from annotate.prolific.testing import FakeProlific


@pytest.fixture
def fake(settings):
    with FakeProlific() as endpoint:
        settings.PROLIFIC_API_URL = endpoint.url + "/api/v1/"
        settings.PROLIFIC_APP_URL = endpoint.url
        settings.PROLIFIC_API_TOKEN = "test-token"
        settings.PUBLIC_BASE_URL = "http://testserver"
        yield endpoint
