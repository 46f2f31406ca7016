"""Long jobs the console starts: a management command in a detached process, with a log file.

Generating stimuli takes minutes, longer than a web request may, so the console runs the same
``manage.py generate_stimuli`` a researcher would, in its own session (it outlives the request
and a server restart), writing to ``var/jobs/<name>.log``. Progress comes from the database rows
the command updates; a job that died is resumed by starting it again (the command resumes).
``BLINDSPOT_CONSOLE_JOBS=inline`` runs the command inside the request instead (tests, and
single-process setups without a writable ``var/``).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from annotate.errors import JobError

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def jobs_dir() -> Path:
    return Path(settings.BLINDSPOT_JOBS_DIR)


def _paths(name: str) -> tuple[Path, Path]:
    if not _SAFE.match(name):
        raise JobError(f"job name {name!r} may hold only letters, digits, '.', '_' and '-'")
    return jobs_dir() / f"{name}.log", jobs_dir() / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child of this process stays a zombie until reaped: reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def job_running(name: str) -> bool:
    """Whether the job ``name`` has a live process (its pid file names one)."""
    _, pid_file = _paths(name)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    return _alive(pid)


def job_log(name: str, tail: int = 4000) -> str:
    """The last ``tail`` characters of the job's log ('' when it has none)."""
    log, _ = _paths(name)
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - tail))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def job_start(name: str, argv: list[str]) -> str:
    """Run ``manage.py *argv`` as job ``name``; returns how it ran ('process' or 'inline').

    Refused while the same job still runs. Inline mode returns after the command; its output
    (and a CommandError's message) goes to the log all the same.
    """
    log, pid_file = _paths(name)
    try:
        jobs_dir().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobError(f"cannot create the jobs directory {jobs_dir()}: {exc}") from exc
    if job_running(name):
        raise JobError(f"{name} is already running; its progress is on the console home page")
    if settings.BLINDSPOT_CONSOLE_JOBS == "inline":
        out = io.StringIO()
        try:
            call_command(*argv, stdout=out, stderr=out)
        finally:
            log.write_text(out.getvalue(), encoding="utf-8")
        return "inline"
    with log.open("wb") as handle:
        process = subprocess.Popen(  # noqa: S603 — our own manage.py with validated arguments
            [sys.executable, str(MANAGE_PY), *argv],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    return "process"
