"""Blindspot runs with the ``mturk`` app left out of ``INSTALLED_APPS``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """Run in a fresh interpreter without provider apps, on its own SQLite database (never the
    outer run's test database, which may be PostgreSQL's and in use)."""
    env = {
        **os.environ,
        "BLINDSPOT_PROVIDER_APPS": "",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "BLINDSPOT_VAR_DIR": str(tmp / "var"),
    }
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_checks_and_migrations_agree_without_mturk(tmp_path):
    checked = _run("manage.py", "check", tmp=tmp_path)
    assert checked.returncode == 0, checked.stderr
    migrated = _run("manage.py", "migrate", "--noinput", tmp=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    migrations = _run("manage.py", "makemigrations", "--check", "--dry-run", tmp=tmp_path)
    assert migrations.returncode == 0, migrations.stdout + migrations.stderr


def test_worker_flow_and_staff_pages_without_mturk(tmp_path):
    test = "tests/config/no_mturk_flow.py"
    ran = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", test, tmp=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "3 passed" in ran.stdout
