"""``manage.py evaluate``: clean error and the thesis's robustness metrics of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from robustness import runtime
from robustness.evaluation import EVALUATION_DEFAULTS
from robustness.registry.cli import (
    BlindspotCommand,
    entity_option,
    param_option,
    positive_int,
    write_json,
)
from robustness.registry.progress import Bars
from robustness.registry.selectors import model_get_done
from robustness.registry.services import model_evaluate


class Command(BlindspotCommand):
    help = (
        "Evaluate a registered model: clean error, FGSM error, and rho under DeepFool, "
        "C&W and the high-confidence attack (thesis Table 4.1 protocol)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "model", required=True)
        parser.add_argument(
            "--attacks",
            default="fgsm,deepfool,cw,hc",
            help=f"comma-separated subset of {','.join(EVALUATION_DEFAULTS)}",
        )
        parser.add_argument(
            "--limit", type=positive_int, default=1000, help="first N test images (default 1000)"
        )
        parser.add_argument("--split", choices=("test", "valid"), default="test")
        param_option(
            parser,
            aliases=("--set",),
            metavar="ATTACK.KEY=VALUE",
            help="override an attack setting, e.g. cw.steps=100 (repeatable)",
        )
        parser.add_argument("--device", choices=runtime.DEVICE_CHOICES)
        parser.add_argument("--json", type=Path, metavar="PATH")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        names = [a.strip() for a in opts["attacks"].split(",") if a.strip()]
        unknown = sorted(set(names) - set(EVALUATION_DEFAULTS))
        if not names or unknown:
            raise CommandError(
                f"--attacks takes {', '.join(EVALUATION_DEFAULTS)}; got {opts['attacks']!r}"
            )
        overrides: dict[str, dict[str, str]] = {}
        for key, value in opts["param"]:
            attack, dot, param = key.partition(".")
            if not dot or not param:
                raise CommandError(f"--param {key}={value}: write ATTACK.KEY=VALUE")
            overrides.setdefault(attack, {})[param] = value
        row = model_get_done(name=opts["model"])
        bars = Bars(disable=opts["no_progress"])
        try:
            report = model_evaluate(
                row=row,
                attack_names=names,
                limit=opts["limit"],
                split=opts["split"],
                device=opts["device"],
                overrides=overrides,
                progress_for=bars.for_name,
            )
        finally:
            bars.close()
        self.stdout.write(format_report(report))
        write_json(opts["json"], report)


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as the few lines the command prints."""
    lines = [
        f"{report['model']}: {report['examples']} {report['split']} images on {report['device']}",
        f"  clean error  {100 * report['clean_error']:.2f}%",
    ]
    if "fgsm" in report:
        f = report["fgsm"]
        lines.append(f"  FGSM eps={f['eps']:g}  error {100 * f['error']:.2f}%")
    for name in ("deepfool", "cw", "hc"):
        if name in report:
            r = report[name]
            rho = "—" if r["rho"] is None else f"{r['rho']:.3f}"
            lines.append(
                f"  {name:9s} rho {rho}  rho_all {r['rho_all']:.3f}  success "
                f"{100 * r['success_rate']:.1f}%  ({r['seconds']:.1f} s)"
            )
    return "\n".join(lines)
