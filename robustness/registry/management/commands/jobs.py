"""``manage.py jobs``: the job queue's jobs — list, show, wait, cancel, retry."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from robustness.registry import jobs
from robustness.registry.cli import BlindspotCommand
from robustness.registry.models import Job
from robustness.registry.progress import wait_with_bar


def line(job: Job) -> str:
    done = f"{job.progress_done}/{job.progress_total}" if job.progress_total else "—"
    where = f" on {job.host}" if job.host else ""
    return f"{job.pk:>6} {job.kind:<15} {job.state:<9} {done:>11}{where}  {job.label}"


class Command(BlindspotCommand):
    help = "The job queue's jobs: list, show, wait, cancel, retry (docs/deployment.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        p = sub.add_parser("list", help="recent jobs (top-level ones; --all for cells too)")
        p.add_argument("--state", choices=Job.State.values)
        p.add_argument("--all", action="store_true")
        p.add_argument("--limit", type=int, default=30)
        for name, text in (
            ("show", "one job, its cells, its log tail"),
            ("wait", "block until the job has finished (a progress bar)"),
            ("cancel", "cancel the job and its unfinished cells"),
            ("retry", "send a failed or cancelled job (or a grid's failed cells) again"),
        ):
            p = sub.add_parser(name, help=text)
            p.add_argument("job", type=int)
            if name == "wait":
                p.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        action = opts["action"]
        if action == "list":
            rows = Job.objects.all()
            if not opts["all"]:
                rows = rows.filter(parent__isnull=True)
            if opts["state"]:
                rows = rows.filter(state=opts["state"])
            for row in rows[: opts["limit"]]:
                self.stdout.write(line(row))
            return
        found = Job.objects.filter(pk=opts["job"]).first()
        if found is None:
            raise CommandError(f"no job {opts['job']}")
        job = found
        if action == "show":
            self.stdout.write(line(job))
            for child in job.children.order_by("pk"):
                self.stdout.write("  " + line(child))
            if job.error:
                self.stdout.write(f"error: {job.error}")
            if job.log:
                self.stdout.write(job.log)
        elif action == "wait":
            job = wait_with_bar(job, disable=opts["no_progress"])
            self.stdout.write(line(job))
            if job.state != Job.State.DONE:
                raise CommandError(f"job {job.pk} {job.state}: {job.error}")
        elif action == "cancel":
            self.stdout.write(f"cancelled {jobs.job_cancel(job)} job(s)")
        elif action == "retry":
            self.stdout.write(line(jobs.job_retry(job)))
