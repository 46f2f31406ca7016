"""Settings come from the environment and refuse unsafe production configurations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def settings_in_subprocess(tmp_path, **env: str) -> subprocess.CompletedProcess:
    code = (
        "import json; from config import settings as s; "
        "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
        "'name': str(s.DATABASES['default']['NAME']), 'debug': s.DEBUG, "
        "'device': s.BLINDSPOT_DEVICE, 'data': str(s.BLINDSPOT_DATA_DIR), "
        "'artifacts': s.STORAGES['artifacts']['BACKEND'], 'key': len(s.SECRET_KEY)}))"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", "BLINDSPOT_DEVICE"}
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**base, "BLINDSPOT_VAR_DIR": str(tmp_path), **env},
        timeout=60,
    )


def test_defaults_are_sqlite_under_var_and_a_generated_key(tmp_path):
    out = settings_in_subprocess(tmp_path)
    assert out.returncode == 0, out.stderr
    assert '"engine": "django.db.backends.sqlite3"' in out.stdout
    assert str(tmp_path / "blindspot.sqlite3") in out.stdout
    assert '"device": "auto"' in out.stdout
    assert (tmp_path / "secret_key").exists()
    again = settings_in_subprocess(tmp_path)
    assert again.stdout == out.stdout  # the development key is kept, not regenerated


def test_database_url_selects_postgresql(tmp_path):
    out = settings_in_subprocess(tmp_path, DATABASE_URL="postgres://u@db.example:5433/blind")
    assert out.returncode == 0, out.stderr
    assert "django.db.backends.postgresql" in out.stdout and '"name": "blind"' in out.stdout


def test_production_without_secret_key_is_refused(tmp_path):
    out = settings_in_subprocess(tmp_path, DEBUG="0")
    assert out.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=0" in out.stderr


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("DEBUG", "maybe", "is not a boolean"),
        ("BLINDSPOT_STORAGES", "{not json", "BLINDSPOT_STORAGES is not valid JSON"),
    ],
)
def test_malformed_variables_are_named(tmp_path, var, value, message):
    out = settings_in_subprocess(tmp_path, **{var: value})
    assert out.returncode != 0 and message in out.stderr


def test_storages_can_be_swapped_without_code_changes(tmp_path):
    out = settings_in_subprocess(
        tmp_path, BLINDSPOT_STORAGES='{"artifacts": {"BACKEND": "my.S3Storage"}}'
    )
    assert out.returncode == 0 and '"artifacts": "my.S3Storage"' in out.stdout
