"""``manage.py reproduce``: train and measure a thesis table's grid, print it beside the thesis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from robustness import runtime
from robustness.registry.cli import BlindspotCommand, positive_int, write_json
from robustness.registry.progress import TqdmCallbacks
from robustness.registry.reproduction import Cell, format_table, reproduce
from robustness.tables import PRESETS, TABLES


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
            help="smoke: minutes on a CPU; full: the thesis's budget (GPU)",
        )
        parser.add_argument("--device", choices=runtime.DEVICE_CHOICES)
        parser.add_argument(
            "--dataset",
            choices=("mnist", "synthetic"),
            default="mnist",
            help="synthetic: a quick check of the machinery, not of the thesis",
        )
        parser.add_argument("--json", type=Path, metavar="PATH")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
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
            )
        finally:
            for bar in bars:
                bar.close()
        self.stdout.write(format_table(report))
        write_json(opts["json"], report)
