"""A simulated cell for the many-worker test: two seconds of "work", then one
line appended to a file, so a cell carried out twice would show twice."""

from __future__ import annotations

import os
import time

from celery import shared_task

from robustness.registry import jobs


def _cell(job, progress) -> dict:
    for step in range(8):
        time.sleep(0.25)
        progress(step + 1, 8)
    with open(job.params["ledger"], "a") as ledger:  # O_APPEND: one whole line per write
        ledger.write(f"{job.pk} {os.getpid()}\n")
    return {"pid": os.getpid()}


@shared_task(name="blindspot.sim_cell")
def sim_cell(job_id: int) -> None:
    jobs.job_run(job_id, _cell)
