"""``manage.py generate_stimuli``: a model's high-confidence adversarial set and its controls."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from annotate.models import StimulusSet
from annotate.stimuli.adversarial import stimulus_set_generate
from annotate.stimuli.queueing import MOST_CHUNKS, stimulus_set_queue
from annotate.stimuli.requests import ATTACK, SPLITS, TARGETS, StimulusRequest
from robustness import runtime
from robustness.registry.cli import BlindspotCommand, entity_option, positive_int
from robustness.registry.progress import Bars


class Command(BlindspotCommand):
    help = (
        "Run the high-confidence targeted attack on a registered model and store the 8-bit "
        "stimuli (resumable, idempotent), optionally with clean/noise/flipped control sets."
    )
    interrupted = "interrupted; run the same command again to resume"

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "model", required=True)
        entity_option(parser, "set", aliases=("--name",), help="the set's name (default: MODEL-hc)")
        parser.add_argument("--split", choices=SPLITS, default="test")
        parser.add_argument("--limit", type=positive_int, help="only the first N images")
        parser.add_argument("--target", choices=TARGETS, default="closest")
        parser.add_argument(
            "--confidence",
            default="original",
            help="'original' (the clean confidence) or a number in (0, 1)",
        )
        parser.add_argument(
            "--controls", default="", help="comma-separated control sets: clean, noise, flipped"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--device", choices=runtime.DEVICE_CHOICES)
        parser.add_argument("--batch-size", type=positive_int, default=500)
        parser.add_argument("--steps", type=positive_int, default=ATTACK.steps)
        parser.add_argument("--replace", action="store_true", help="regenerate an existing set")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="split the sources over the job queue's workers (prints the job id)",
        )
        parser.add_argument(
            "--chunks", type=positive_int, default=None, help="with --queue: how many (default 4)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        request = request_from_options(opts)
        if opts["chunks"] and not opts["queue"]:
            raise CommandError("--chunks goes with --queue")
        if opts["queue"]:
            self.queue(request, opts)
            return
        bars = Bars(disable=opts["no_progress"])
        try:
            stimulus_set_generate(request=request, device=opts["device"], progress=bars)
        finally:
            bars.close()
        names = [request.set_name, *request.control_names]
        for row in StimulusSet.objects.filter(name__in=names).order_by("id"):
            stimuli = row.stimuli.all()
            total = stimuli.count()
            hits = stimuli.filter(success=True).count()
            self.stdout.write(
                f"{row.name} ({row.kind}): {total} stimuli, {hits} reach the target as shown "
                f"(8-bit), on {row.device}"
            )

    def queue(self, request: StimulusRequest, opts: dict[str, Any]) -> None:
        """One job per span of source images under a parent job; the set is complete when
        every chunk has landed (the last one makes the controls)."""
        parent = stimulus_set_queue(
            request=request, chunks=opts["chunks"] or MOST_CHUNKS, device=opts["device"]
        )
        self.stdout.write(
            f"job {parent.pk}: {parent.progress_total} chunks of {request.set_name} "
            f"({parent.params['images']} images) queued "
            f"— follow it with `manage.py jobs wait {parent.pk}` or on the console's jobs page"
        )


def request_from_options(opts: dict[str, Any]) -> StimulusRequest:
    """The typed request the parsed flags describe (:meth:`StimulusRequest.argv` inverted)."""
    return StimulusRequest(
        model=opts["model"],
        name=opts["set"],
        split=opts["split"],
        limit=opts["limit"],
        target=opts["target"],
        confidence=opts["confidence"],
        seed=opts["seed"],
        batch_size=opts["batch_size"],
        steps=opts["steps"],
        controls=opts["controls"],
        replace=opts["replace"],
    )
