"""Real Celery workers (and beat) for the queue tests: separate processes on a real Redis,
sharing the test database and the test's files with the test process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/15"


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Cluster:
    """Worker and beat processes started for one test, all stopped (SIGKILL) at its end."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": BROKER,
            "CELERY_VISIBILITY_TIMEOUT": "4",
            "BLINDSPOT_RUN_STALE_SECONDS": "4",
            "BLINDSPOT_VAR_DIR": str(tmp / "var"),
            "BLINDSPOT_RUNS_DIR": str(settings.BLINDSPOT_RUNS_DIR),
            "BLINDSPOT_DATA_DIR": str(settings.BLINDSPOT_DATA_DIR),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "BLINDSPOT_STORAGES": json.dumps(
                {
                    "artifacts": {
                        "BACKEND": "django.core.files.storage.FileSystemStorage",
                        "OPTIONS": {"location": str(tmp / "artifacts")},
                    }
                }
            ),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **env,
        }
        self.env.pop("PYTEST_ADDOPTS", None)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def worker(self, name: str, *, queues: str = "gpu,cpu", include: str = "") -> int:
        """Start a solo-pool worker (its task runs in its own process: its pid is the job's)."""
        args = ["worker", "-Q", queues, "-P", "solo", "-n", f"{name}@%h", "-l", "info"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        if include:
            args += ["-I", include]
        return self._start(name, args).pid

    def beat(self) -> int:
        return self._start(
            "beat", ["beat", "-s", str(self.tmp / "beat-schedule"), "-l", "info"]
        ).pid

    def wait_ready(self, *names: str, timeout: float = 120) -> None:
        """Until each worker's log says it is ready."""
        deadline = time.monotonic() + timeout
        for name in names:
            while b"ready." not in (self.tmp / f"{name}.log").read_bytes():
                proc = self.procs[name]
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"worker {name} did not start:\n{self.log(name)}")
                time.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started, as a machine would lose them."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)

    def name_of(self, pid: int) -> str:
        return next(n for n, p in self.procs.items() if p.pid == pid)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_bytes().decode("utf-8", "replace")[-4000:]

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)
