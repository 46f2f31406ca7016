"""Production settings (finding 9): HTTPS switches from the environment, `check --deploy` clean
under the documented production example, and proxies trusted only as far as configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "production.env.example"


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DATABASE"))}
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env.update(BLINDSPOT_VAR_DIR=str(tmp_path), STATIC_ROOT=str(tmp_path / "static"), **extra)
    return env


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_under_the_production_example(tmp_path):
    out = run(
        "manage.py", "check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path)
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_the_same_check_names_what_is_missing_without_the_https_switches(tmp_path):
    env = production_env(tmp_path)
    for key in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"):
        env.pop(key)
    out = run("manage.py", "check", "--deploy", "--fail-level", "WARNING", env=env)
    assert out.returncode != 0
    assert "security.W004" in out.stderr + out.stdout and "security.W008" in out.stderr + out.stdout


def test_https_settings_come_from_the_environment(tmp_path):
    code = (
        "from config import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_PROXY_SSL_HEADER, s.REST_FRAMEWORK['NUM_PROXIES'], s.CACHES['default'])"
    )
    out = run("-c", code, env=production_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https') 1" in out.stdout
    assert "RedisCache" in out.stdout
    bad = run("-c", code, env=production_env(tmp_path, SECURE_PROXY_SSL_HEADER="https"))
    assert bad.returncode != 0 and "write HEADER:VALUE" in bad.stderr
