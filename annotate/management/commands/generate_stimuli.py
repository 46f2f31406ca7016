"""``manage.py generate_stimuli``: a model's high-confidence adversarial set and its controls."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotate.models import AdversarialSet
from annotate.stimuli import (
    HC_STEPS,
    StimulusError,
    parse_confidence,
    parse_controls,
    stimulus_set_generate,
)
from robustness import runtime
from robustness.checkpoint import CheckpointError
from robustness.data import DataSourceError
from robustness.management.commands._options import positive_int
from robustness.models import TrainedModel
from robustness.services import RegistryError


def _argument(parse):
    """An argparse type from one of the service's parsers (its message becomes the error)."""

    def convert(text: str):
        try:
            return parse(text)
        except StimulusError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


class Bars:
    """One tqdm bar per set, fed by the service's ``progress(name, done, total)``."""

    def __init__(self, disable: bool) -> None:
        self.disable = disable
        self.bars: dict[str, tqdm] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(
                total=total, initial=done, desc=name, unit="img", disable=self.disable
            )
        else:
            bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class Command(BaseCommand):
    help = (
        "Run the high-confidence targeted attack on a registered model and store the 8-bit "
        "stimuli (resumable, idempotent), optionally with clean/noise/flipped control sets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, help="registry name")
        parser.add_argument("--split", choices=("test", "valid"), default="test")
        parser.add_argument("--limit", type=positive_int, help="only the first N images")
        parser.add_argument("--target", choices=("closest", "random"), default="closest")
        parser.add_argument(
            "--confidence",
            type=_argument(parse_confidence),
            default="original",
            help="'original' (the clean confidence) or a number in (0, 1)",
        )
        parser.add_argument("--name", help="set name (default: MODEL-hc)")
        parser.add_argument(
            "--controls",
            type=_argument(parse_controls),
            default=[],
            help="comma-separated control sets: clean, noise, flipped",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--device", choices=runtime.DEVICE_CHOICES)
        parser.add_argument("--batch-size", type=positive_int, default=500)
        parser.add_argument("--steps", type=positive_int, default=HC_STEPS, help="attack steps")
        parser.add_argument("--replace", action="store_true", help="regenerate an existing set")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        model = TrainedModel.objects.filter(name=opts["model"]).first()
        if model is None:
            raise CommandError(f"no model named {opts['model']!r}; see manage.py models")
        bars = Bars(disable=opts["no_progress"])
        try:
            adversarial = stimulus_set_generate(
                model=model,
                name=opts["name"],
                split=opts["split"],
                limit=opts["limit"],
                target=opts["target"],
                confidence=opts["confidence"],
                seed=opts["seed"],
                device=opts["device"],
                batch_size=opts["batch_size"],
                steps=opts["steps"],
                replace=opts["replace"],
                controls=opts["controls"],
                progress=bars,
            )
        except KeyboardInterrupt:
            raise CommandError("interrupted; run the same command again to resume") from None
        except (
            StimulusError,
            RegistryError,
            CheckpointError,
            DataSourceError,
            runtime.DeviceError,
        ) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bars.close()
        names = [adversarial.name] + [f"{adversarial.name}-{k}" for k in opts["controls"]]
        for row in AdversarialSet.objects.filter(name__in=names).order_by("id"):
            stimuli = row.stimuli.all()
            total = stimuli.count()
            hits = stimuli.filter(success=True).count()
            self.stdout.write(
                f"{row.name} ({row.kind}): {total} stimuli, {hits} reach the target as shown "
                f"(8-bit), on {row.device}"
            )
