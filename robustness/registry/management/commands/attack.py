"""``manage.py attack``: one attack on a registered model, summarised the chapter 5 way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from robustness import attacks, runtime
from robustness.registry.cli import (
    BlindspotCommand,
    entity_option,
    float_list,
    param_option,
    positive_int,
    write_json,
)
from robustness.registry.progress import Bars
from robustness.registry.selectors import model_get_done
from robustness.registry.services import model_attack


class Command(BlindspotCommand):
    help = (
        "Attack a registered model and report success rate, mean/median norm and robust "
        "accuracy at thresholds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "model", required=True)
        parser.add_argument("--attack", required=True, choices=attacks.names())
        parser.add_argument(
            "--norm",
            help="linf, l2, l1, l0 or l0_pixel: one the attack supports (its own if fixed)",
        )
        parser.add_argument("--limit", type=positive_int, default=1000)
        parser.add_argument("--split", choices=("test", "valid"), default="test")
        parser.add_argument("--steps", type=positive_int, help="iterations")
        parser.add_argument("--restarts", type=positive_int, help="random restarts")
        param_option(parser, aliases=("--set",), help="any other attack parameter (repeatable)")
        parser.add_argument(
            "--thresholds", type=float_list, help="robust-accuracy thresholds, e.g. 0.1,0.2,0.3"
        )
        parser.add_argument("--device", choices=runtime.DEVICE_CHOICES)
        parser.add_argument("--json", type=Path, metavar="PATH")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        params: dict[str, Any] = dict(opts["param"])
        for flag in ("norm", "steps", "restarts"):
            if opts[flag] is not None:
                params[flag] = opts[flag]
        row = model_get_done(name=opts["model"])
        bars = Bars(disable=opts["no_progress"])
        try:
            report = model_attack(
                row=row,
                attack_name=opts["attack"],
                params=params,
                limit=opts["limit"],
                split=opts["split"],
                device=opts["device"],
                thresholds=opts["thresholds"],
                progress=bars.for_name(opts["attack"]),
            )
        finally:
            bars.close()
        mean = report["mean_norm"]
        robust = ", ".join(f"{k}: {100 * v:.1f}%" for k, v in report["robust_accuracy"].items())
        self.stdout.write(
            f"{report['model']}: {report['attack']} ({report['norm']}) on {report['examples']} "
            f"images: success {100 * report['success_rate']:.1f}%, mean norm "
            f"{'—' if mean is None else f'{mean:.4f}'}, {report['seconds']:.1f} s "
            f"({report['images_per_second']:.1f} img/s)\n  robust accuracy {robust}"
        )
        write_json(opts["json"], report)
