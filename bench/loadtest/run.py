"""``make loadtest``: the worker flow under gunicorn on PostgreSQL, driven by locust.

Creates a scratch database, builds an open study with synthetic stimuli, serves it with
gunicorn (DEBUG off, throttling on with its default rates, counted in Redis when one answers at
``LOADTEST_REDIS_URL``), lets N simulated participants arrive within a window (default: the
thesis's 400 within 60 s, as Prolific fills a study) and each do one whole assignment, then
checks in the database that every acknowledged answer was stored. Writes per-step
p50/p95/p99 and error counts, the verdict and the machine to ``bench/results/loadtest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recreate_database(url: str) -> None:
    """Drop and create the scratch database named in ``url`` (via the server's postgres db)."""
    import dj_database_url
    import psycopg2

    cfg = dj_database_url.parse(url)
    conn = psycopg2.connect(
        dbname="postgres", user=cfg["USER"], host=cfg["HOST"], port=cfg["PORT"] or 5432
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    conn.close()


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers at ``url``; its database is flushed for a clean count."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        client.flushdb()
        return True
    except Exception:  # no package, no server: throttle counters stay per process
        return False


def settings_rates(env: dict[str, str]) -> dict[str, str]:
    """The throttle rates the server runs with, as its settings read them from ``env``."""
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps(settings.BLINDSPOT_THROTTLE_RATES))"
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not listen on port {port} within {timeout:.0f} s")


def warm_up(port: int, key: str, requests: int) -> None:
    """Touch the entry page concurrently so every gunicorn worker has imported and connected."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def get(_: int) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/s/{key}/", timeout=30) as r:
            r.read()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, range(requests)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument(
        "--arrive-within", type=float, default=60.0, help="seconds in which all users arrive"
    )
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--run-time", default="300s", help="safety limit for locust")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "LOADTEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/blindspot_loadtest"
        ),
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("LOADTEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="the cache for throttle counters (flushed first; '' for per-process memory)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/loadtest.json")
    args = parser.parse_args()
    spawn_rate = args.users / args.arrive_within
    redis_url = args.redis_url if args.redis_url and redis_answers(args.redis_url) else ""

    work = Path(tempfile.mkdtemp(prefix="blindspot-loadtest-"))
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DATABASE_CONN_MAX_AGE": "60",
        "DEBUG": "0",
        "SECRET_KEY": "loadtest-" + os.urandom(16).hex(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "BLINDSPOT_VAR_DIR": str(work / "var"),
        "BLINDSPOT_NUM_PROXIES": "1",  # locust plays the proxy: X-Forwarded-For names a client
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "ERROR",
    }
    recreate_database(args.database_url)
    py = sys.executable
    manage = str(ROOT / "manage.py")
    subprocess.run([py, manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
    subprocess.run([py, manage, "collectstatic", "--noinput", "-v", "0"], env=env, check=True)
    assignments = args.users + 10
    key = subprocess.run(
        [py, str(HERE / "fixture.py"), "setup", "--assignments", str(assignments)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip

    port = free_port()
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(args.gunicorn_workers), "--preload", "--log-level", "warning",
        ],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait_for(port)
        warm_up(port, key, requests=16 * args.gunicorn_workers)
        stats, ledger = work / "stats.json", work / "ledger.json"
        started = time.monotonic()
        subprocess.run(
            [
                str(BIN / "locust"), "-f", str(HERE / "locustfile.py"), "--headless",
                "--users", str(args.users), "--spawn-rate", str(spawn_rate),
                "--run-time", args.run_time, "--host", f"http://127.0.0.1:{port}",
                "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
            ],
            env={**env, "LOADTEST_STUDY_KEY": key, "LOADTEST_USERS": str(args.users),
                 "LOADTEST_OUT": str(stats), "LOADTEST_LEDGER": str(ledger)},
            check=True,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    verdict = json.loads(
        subprocess.run(
            [py, str(HERE / "fixture.py"), "verify", str(ledger)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    result = json.loads(stats.read_text())
    p99_ok = all(s["p99_ms"] <= 250 for s in result["steps"].values())
    report = {
        "benchmark": "worker flow under load (make loadtest)",
        "setup": {
            "users": args.users,
            "arrive_within_s": args.arrive_within,
            "spawn_rate_per_s": round(spawn_rate, 2),
            "throttling": {
                "rates": settings_rates(env),
                "client": "X-Forwarded-For behind one trusted proxy (one address per user)",
                "counters": "Redis" if redis_url else "each gunicorn process's memory",
            },
            "server": f"gunicorn --preload, {args.gunicorn_workers} sync workers, DEBUG=0, "
            "warmed up with a few requests first",
            "database": "PostgreSQL",
            "flow": "entry from a panel link (PROLIFIC_PID), start (lease, with the page's "
            "attempt nonce), page + its script and style, items with 25 inline images, "
            "5 autosaves, submit, done",
            "pace": "2-5 s on the instructions, autosaves 2-4 s apart (about 20 s a worker)",
            "seconds": round(elapsed, 1),
        },
        "steps": result["steps"],
        "total": result["total"],
        "verdict": verdict,
        "targets": {
            "p99_under_250ms_every_step": p99_ok,
            "zero_errors": result["total"]["failures"] == 0,
            "zero_lost_answers": verdict["answers_lost"] == 0
            and verdict["answers_mismatched"] == 0,
            "every_worker_submitted": verdict["submits_acknowledged"] == args.users,
        },
    }
    import torch

    from bench._machine import write_report

    write_report(args.out, torch.device("cpu"), report)
    print(json.dumps({"total": report["total"], "targets": report["targets"]}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
