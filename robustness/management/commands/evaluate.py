"""``manage.py evaluate``: clean error and the thesis's robustness metrics of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from robustness import runtime
from robustness.data import DataSourceError
from robustness.management.commands._attacking import ChunkBar, registered_model, write_json
from robustness.management.commands._options import key_value, positive_int
from robustness.services import EVALUATION_DEFAULTS, RegistryError, model_evaluate


class Command(BaseCommand):
    help = (
        "Evaluate a registered model: clean error, FGSM error, and rho under DeepFool, "
        "C&W and the high-confidence attack (thesis Table 4.1 protocol)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, help="registry name")
        parser.add_argument(
            "--attacks",
            default="fgsm,deepfool,cw,hc",
            help=f"comma-separated subset of {','.join(EVALUATION_DEFAULTS)}",
        )
        parser.add_argument(
            "--limit", type=positive_int, default=1000, help="first N test images (default 1000)"
        )
        parser.add_argument("--split", choices=("test", "valid"), default="test")
        parser.add_argument(
            "--set",
            type=key_value,
            action="append",
            default=[],
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
        for key, value in opts["set"]:
            attack, dot, param = key.partition(".")
            if not dot or not param:
                raise CommandError(f"--set {key}={value}: write ATTACK.KEY=VALUE")
            overrides.setdefault(attack, {})[param] = value
        row = registered_model(opts["model"])
        try:
            report = model_evaluate(
                row=row,
                attack_names=names,
                limit=opts["limit"],
                split=opts["split"],
                device=opts["device"],
                overrides=overrides,
                progress_for=lambda name: ChunkBar(name, opts["no_progress"]),
            )
        except (RegistryError, DataSourceError, runtime.DeviceError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(format_report(report))
        write_json(opts["json"], report)


def format_report(report: dict[str, Any]) -> str:
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
