"""System checks of the settings: found by `manage.py check`, not when a study is published."""

from __future__ import annotations

import pytest

from annotate.checks import storage_settings, worker_settings
from annotate.mturk.checks import mturk_settings
from robustness.registry.checks import device_setting


def ids(problems) -> list[str]:
    return [p.id for p in problems]


def test_the_default_settings_pass():
    assert storage_settings(None) + worker_settings(None) + mturk_settings(None) == []
    assert device_setting(None) == []


def test_storages_must_exist_and_import(settings):
    settings.STORAGES = {**settings.STORAGES, "artifacts": {}}
    assert ids(storage_settings(None)) == ["annotate.E001"]
    settings.STORAGES = {**settings.STORAGES, "artifacts": {"BACKEND": "nowhere.Storage"}}
    assert ids(storage_settings(None)) == ["annotate.E002"]


def test_worker_limits_and_frame_ancestors(settings):
    settings.BLINDSPOT_WORKER_MAX_BODY = 0
    settings.BLINDSPOT_FRAME_ANCESTORS = ["https://ok.example", "not-an-origin", "https://x/p"]
    assert ids(worker_settings(None)) == ["annotate.E003", "annotate.E004", "annotate.E004"]


@pytest.mark.parametrize(
    ("sandbox", "endpoint", "base", "expected"),
    [
        (True, None, "", []),
        (False, None, "", ["mturk.W001"]),
        (True, "ftp://x", "", ["mturk.E001"]),
        (True, None, "study.example.org", ["mturk.E002"]),
        (True, None, "http://study.example.org", ["mturk.W002"]),
        (True, "http://127.0.0.1:8765", "http://127.0.0.1:8000", []),
        (False, None, "https://localhost", ["mturk.E003"]),
        (False, None, "https://study.example.org", []),
    ],
)
def test_mturk_settings(settings, sandbox, endpoint, base, expected):
    settings.MTURK_SANDBOX = sandbox
    settings.MTURK_ENDPOINT_URL = endpoint
    settings.PUBLIC_BASE_URL = base
    assert ids(mturk_settings(None)) == expected


def test_a_device_this_machine_lacks_is_an_error(settings):
    settings.BLINDSPOT_DEVICE = "tpu"
    assert ids(device_setting(None)) == ["robustness.E001"]
