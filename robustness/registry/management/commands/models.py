"""``manage.py models``: list the model registry, or delete entries (``--delete NAME ...``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from robustness.registry.cli import BlindspotCommand
from robustness.registry.models import TrainedModel
from robustness.registry.selectors import model_list
from robustness.registry.services import model_delete


class Command(BlindspotCommand):
    help = "List registered models with their status and test error, or delete some."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--status", choices=TrainedModel.Status.values)
        parser.add_argument("--arch")
        parser.add_argument("--defense")
        parser.add_argument(
            "--delete",
            nargs="+",
            metavar="NAME",
            help="delete these entries with their checkpoints and run folders",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["delete"]:
            doomed = list(TrainedModel.objects.filter(name__in=opts["delete"]))
            missing = sorted(set(opts["delete"]) - {row.name for row in doomed})
            if missing:
                raise CommandError(f"no model named {', '.join(missing)}; nothing deleted")
            for row in doomed:
                model_delete(row=row)
                self.stdout.write(f"deleted {row.name}")
            return
        rows = model_list(status=opts["status"], arch=opts["arch"], defense=opts["defense"])
        header = ("name", "arch", "defense", "status", "epochs", "test err", "img/s", "created")
        table = [header]
        for row in rows:
            err = row.metrics.get("test_error")
            speed = row.metrics.get("images_per_second")
            table.append(
                (
                    row.name,
                    row.arch,
                    row.defense,
                    row.status,
                    f"{row.epochs_done}/{row.epochs_total}",
                    "—" if err is None else f"{100 * err:.2f}%",
                    "—" if speed is None else f"{speed:.0f}",
                    row.created.strftime("%Y-%m-%d %H:%M"),
                )
            )
        if len(table) == 1:
            self.stdout.write("no models registered; train one with manage.py train")
            return
        widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
        for r in table:
            self.stdout.write(
                "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            )
