"""Locust scenario: each simulated participant does the whole flow once, as a browser would.

Arriving from a panel's link (``?PROLIFIC_PID=…``): entry page → consent (with the page's
attempt nonce) → labeling page → items (with their pixels) → autosaves → submit → done page;
the page's static files (script, style) too, as a browser fetches them once. Each participant
comes from an address of its own (``X-Forwarded-For``, read behind one trusted proxy), so the
server's per-client throttles see 400 clients, as in a real study.
Run by ``bench/loadtest/run.py`` (``make loadtest``); settings come from the environment:
LOADTEST_STUDY_KEY, LOADTEST_USERS, LOADTEST_OUT (JSON path), LOADTEST_LEDGER (submitted leases).
"""

from __future__ import annotations

import json
import os
import random
import re
import threading

import gevent
from locust import FastHttpUser, between, events, task

from annotate.labels import LABELS

STUDY_KEY = os.environ.get("LOADTEST_STUDY_KEY", "")
USERS = int(os.environ.get("LOADTEST_USERS", "100"))
OUT = os.environ.get("LOADTEST_OUT", "loadtest-stats.json")
LEDGER = os.environ.get("LOADTEST_LEDGER", "loadtest-ledger.json")
AUTOSAVES = 5  # a worker's page autosaves as they type; five batches of five answers

_lock = threading.Lock()
_finished: list[dict] = []
_counter = iter(range(10**9))


class Worker(FastHttpUser):
    """One person doing one assignment at a brisk human pace.

    2–5 s on the instructions, then five autosaves 2–4 s apart (five digits each): about 20 s
    per assignment, far faster than real workers, so the server sees more load than in a study.
    """

    wait_time = between(2.0, 4.0)

    @task
    def whole_flow(self) -> None:
        n = next(_counter)
        worker_id = f"loadtest-{os.getpid()}-{n}"
        address = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        outcome = {"worker_id": worker_id, "submitted": False}
        try:
            self._flow(worker_id, {"X-Forwarded-For": address}, outcome)
        finally:
            with _lock:
                _finished.append(outcome)
                if len(_finished) >= USERS:
                    gevent.spawn_later(0.5, self.environment.runner.quit)
        gevent.sleep(10**6)  # done: idle (a stopped user would be replaced by a new one)

    def _flow(self, worker_id: str, headers: dict[str, str], outcome: dict) -> None:
        c = self.client
        entry = c.get(
            f"/s/{STUDY_KEY}/?PROLIFIC_PID={worker_id}", name="1 entry page", headers=headers
        )
        nonce = re.search(r'name="attempt" value="([^"]+)"', entry.text or "")
        gevent.sleep(random.uniform(2.0, 5.0))  # reading the instructions
        r = c.post(
            f"/s/{STUDY_KEY}/start",
            data={"consent": "yes", "worker_id": worker_id, "attempt": nonce[1] if nonce else ""},
            allow_redirects=False,
            name="2 start (lease)",
            headers=headers,
        )
        match = re.search(r"/w/([^/]+)/", r.headers.get("Location", ""))
        if r.status_code != 302 or not match:
            return
        token = match.group(1)
        outcome["token"] = token
        c.get(f"/w/{token}/", name="3 labeling page", headers=headers)
        c.get("/static/annotate/work.js", name="3 static files", headers=headers)
        c.get("/static/annotate/work.css", name="3 static files", headers=headers)
        payload = c.get(f"/api/work/{token}", name="4 items", headers=headers).json()
        items = payload["items"]  # the 25 images come inline, as data: URIs
        answers = [
            {
                "item": it["key"],
                "label": random.choice(LABELS),
                "ms": random.randint(300, 4000),
            }
            for it in items
        ]
        step = -(-len(answers) // AUTOSAVES)
        for i in range(0, len(answers), step):
            self.wait()
            c.put(
                f"/api/work/{token}/answers",
                json={"answers": answers[i : i + step]},
                name="5 autosave",
                headers=headers,
            )
        r = c.post(
            f"/api/work/{token}/submit", json={"answers": answers}, name="6 submit", headers=headers
        )
        if r.status_code == 200:
            outcome.update(submitted=True, code=r.json()["completion_code"], answers=answers)
            c.get(f"/w/{token}/done", name="7 done page", headers=headers)


@events.quitting.add_listener
def _report(environment, **_kw) -> None:
    """Per-step p50/p95/p99 and errors, and the ledger of what the server acknowledged."""
    steps = {}
    for (name, method), entry in sorted(environment.stats.entries.items()):
        steps[name] = {
            "method": method,
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "p50_ms": entry.get_response_time_percentile(0.50),
            "p95_ms": entry.get_response_time_percentile(0.95),
            "p99_ms": entry.get_response_time_percentile(0.99),
            "max_ms": entry.max_response_time,
            "rps": round(entry.total_rps, 1),
        }
    total = environment.stats.total
    summary = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "p50_ms": total.get_response_time_percentile(0.50),
        "p95_ms": total.get_response_time_percentile(0.95),
        "p99_ms": total.get_response_time_percentile(0.99),
        "rps": round(total.total_rps, 1),
        "errors": [
            {"name": e.name, "error": str(e.error), "occurrences": e.occurrences}
            for e in environment.stats.errors.values()
        ],
    }
    with open(OUT, "w") as fh:
        json.dump({"steps": steps, "total": summary}, fh, indent=2)
    with open(LEDGER, "w") as fh:
        json.dump(_finished, fh)
