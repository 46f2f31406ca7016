"""Eight worker processes on this machine take a 40-cell grid of tiny tasks; two are killed with
SIGKILL midway. Every cell is done, and done exactly once (a ledger line per completed cell);
the console's jobs JSON shows the grid's progress moving while it runs."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from robustness.registry import jobs
from robustness.registry.models import Job

# Several worker processes writing at once is a PostgreSQL deployment (docs/deployment.md):
# SQLite serves one host with one worker, so these run on PostgreSQL (CI's second pass).
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = [f"w{i}" for i in range(8)]
CELLS = 40


def test_forty_cells_over_eight_workers_two_killed_each_done_once(cluster, tmp_path):
    for name in WORKERS:
        cluster.worker(name, queues="cpu", include="tests.queue.simtasks")
    cluster.wait_ready(*WORKERS, timeout=300)
    ledger = tmp_path / "ledger.txt"
    parent = jobs.job_create(kind="grid", params={}, label="simulated grid")
    cells = [
        jobs.job_create(kind="sim_cell", params={"ledger": str(ledger)}, parent=parent)
        for _ in range(CELLS)
    ]
    jobs.jobs_send(cells)
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("s", password="p", is_staff=True))
    seen: list[int] = []
    killed: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        row = staff.get(reverse("console:job-json", args=[parent.pk])).json()["job"]
        seen.append(row["done"])
        running = Job.objects.filter(parent=parent, state=Job.State.RUNNING).exclude(host="")
        if len(killed) < 2 and 4 <= row["done"] < CELLS - 8:  # midway: two die mid-cell
            for host in dict.fromkeys(running.values_list("host", flat=True)):
                name = cluster.name_of(int(host.rsplit(":", 1)[1]))
                if name not in killed and len(killed) < 2:
                    cluster.kill(name)  # its cell is left running and unacknowledged
                    killed.append(name)
        if row["state"] in ("done", "failed"):
            break
        time.sleep(0.3)
    parent.refresh_from_db()
    assert len(killed) == 2
    assert parent.state == Job.State.DONE, parent.error
    assert set(Job.objects.filter(parent=parent).values_list("state", flat=True)) == {"done"}
    lines = ledger.read_text().splitlines()
    counts = Counter(line.split()[0] for line in lines)
    assert sorted(counts) == sorted(str(c.pk) for c in cells)
    assert set(counts.values()) == {1}, "a cell was carried out twice"
    moving = [b for a, b in zip(seen, seen[1:], strict=False) if b > a]
    assert len(moving) >= 3, f"progress seen: {seen}"
