"""``manage.py`` on a database that was never migrated: one clear line, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_unmigrated_database_gets_a_hint_not_a_traceback(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        "BLINDSPOT_VAR_DIR": str(tmp_path / "var"),
    }
    for command in (["models"], ["study_results", "--study", "x"]):
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert "run `python manage.py migrate` first" in done.stderr
        assert "Traceback" not in done.stderr
