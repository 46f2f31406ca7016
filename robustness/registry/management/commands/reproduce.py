"""``manage.py reproduce``: train and measure a thesis table's grid, print it beside the thesis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from robustness import runtime
from robustness.registry import jobs
from robustness.registry.cli import BlindspotCommand, positive_int, write_json
from robustness.registry.models import Job
from robustness.registry.progress import TqdmCallbacks, wait_with_bar
from robustness.registry.reproduction import Cell, format_table, grid, reproduce
from robustness.tables import PRESETS, TABLES


def names_arg(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


class Command(BlindspotCommand):
    interrupted = "interrupted; run the same command again to resume"
    help = (
        "Reproduce a thesis table: train its networks x defenses (registered, resumable), "
        "evaluate them as the thesis did and print mean ± std next to the thesis's numbers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("table", choices=sorted(TABLES))
        parser.add_argument("--runs", type=positive_int, default=1, help="seeds 0..N-1")
        parser.add_argument("--epochs", type=positive_int, help="override the preset's epochs")
        parser.add_argument(
            "--preset",
            choices=sorted(PRESETS),
            default="smoke",
            help="smoke: minutes on a CPU; research: the thesis's claims on a CPU (hours); "
            "full: the thesis's budget (GPU)",
        )
        parser.add_argument("--device", choices=runtime.DEVICE_CHOICES)
        parser.add_argument(
            "--dataset",
            choices=("mnist", "synthetic"),
            default="mnist",
            help="synthetic: a quick check of the machinery, not of the thesis",
        )
        parser.add_argument(
            "--network", type=names_arg, default=None, help="only these networks (comma-separated)"
        )
        parser.add_argument(
            "--defense",
            type=names_arg,
            default=None,
            help="only these rows, by their thesis label (comma-separated, e.g. none,AT)",
        )
        parser.add_argument("--json", type=Path, metavar="PATH")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="send the grid's cells to the job queue's workers (prints the job id)",
        )
        parser.add_argument(
            "--wait", action="store_true", help="with --queue: wait for the cells, then report"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["wait"] and not opts["queue"]:
            raise CommandError("--wait goes with --queue")
        if opts["queue"]:
            parent = self.queue(opts)
            if not opts["wait"]:
                return
            finished = wait_with_bar(parent, disable=opts["no_progress"])
            if finished.state != Job.State.DONE:
                raise CommandError(
                    f"job {parent.pk} {finished.state}: {finished.error} "
                    f"(`manage.py jobs show {parent.pk}`; `manage.py jobs retry {parent.pk}`)"
                )
        self.run_in_process(opts)

    def queue(self, opts: dict[str, Any]) -> Job:
        """Send one job per cell as a group under a parent job; say how to follow it."""
        table = opts["table"]
        common = {
            "table": table,
            "preset": opts["preset"],
            "epochs": opts["epochs"],
            "device": opts["device"],
            "dataset": opts["dataset"],
        }
        cells = grid(table, opts["runs"], networks=opts["network"], defenses=opts["defense"])
        jobs.broker_check()
        parent = jobs.job_create(
            kind="reproduce",
            params={**common, "runs": opts["runs"]},
            label=f"{table} {opts['preset']} ×{opts['runs']}",
        )
        children = [
            jobs.job_create(
                kind="reproduce_cell",
                params={**common, "arch": arch, "row": row, "run": run},
                label=f"{table} {arch} {row} r{run}",
                parent=parent,
            )
            for arch, row, run in cells
        ]
        jobs.jobs_send(children)
        jobs.parent_rollup(parent.pk)
        self.stdout.write(
            f"job {parent.pk}: {len(children)} cells queued — follow it with "
            f"`manage.py jobs wait {parent.pk}` or on the console's jobs page; run this "
            "command again without --queue (or with --wait) to collect the table"
        )
        return parent

    def run_in_process(self, opts: dict[str, Any]) -> None:
        scales = {c.label: c.scale for c in TABLES[opts["table"]].columns}

        def done(cell: Cell) -> None:
            shown = ", ".join(
                f"{k} —" if v is None else f"{k} {v * scales[k]:.4g}"
                for k, v in cell.values.items()
            )
            self.stdout.write(f"{cell.model}: {shown}")

        bars: list[TqdmCallbacks] = []

        def progress(name: str) -> TqdmCallbacks:
            bar = TqdmCallbacks(batch_size=100, disable=opts["no_progress"])
            bars.append(bar)
            return bar

        try:
            report = reproduce(
                table_name=opts["table"],
                preset_name=opts["preset"],
                runs=opts["runs"],
                epochs=opts["epochs"],
                device=opts["device"],
                on_cell=done,
                callbacks=progress,
                networks=opts["network"],
                defenses=opts["defense"],
                dataset=opts["dataset"],
            )
        finally:
            for bar in bars:
                bar.close()
        self.stdout.write(format_table(report))
        write_json(opts["json"], report)
