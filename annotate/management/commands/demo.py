"""``manage.py demo``: two small models, their stimuli, and an open study ready for workers.

Every step is idempotent: a second run reuses the trained models, the stimulus sets and the
study, so ``make demo`` can be run again and simply serves the same study.
"""

from __future__ import annotations

import io
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandParser

from annotate.models import Lease, StimulusSet, Study
from annotate.work.simulation import workers_simulate
from robustness.registry.cli import BlindspotCommand, non_negative_int
from robustness.registry.models import TrainedModel

# Two LeNet-5s on 20k training images: plain, and FGSM adversarial training (chapter 4, ε 0.1).
DEMO_MODELS = (
    ("demo-lenet5", ["--defense", "none", "--epochs", "3"]),
    ("demo-lenet5-at", ["--defense", "at", "--epochs", "2", "--param", "eps=0.1"]),
)
STUDY = "demo"
DEMO_USER, DEMO_PASSWORD = "demo", "blindspot-demo"  # printed by the demo; local use only


class Command(BlindspotCommand):
    help = "Train two small models, generate their stimuli, create and open the demo study."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=300, help="test images per set")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--simulate-workers",
            type=non_negative_int,
            default=0,
            metavar="N",
            help="fill in answers of N simulated workers in all (marked simulated everywhere)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        sets = []
        for name, flags in DEMO_MODELS:
            if not TrainedModel.objects.filter(name=name, status="done").exists():
                self.stdout.write(f"training {name} …")
                call_command(
                    "train",
                    "--model", name, "--arch", "lenet5", "--train-limit", "20000", "--seed", "0",
                    "--device", opts["device"], "--replace", *flags,
                )  # fmt: skip
            set_name = f"{name}-hc"
            self.stdout.write(f"stimuli {set_name} …")
            call_command(
                "generate_stimuli",
                "--model", name, "--set", set_name, "--limit", str(opts["images"]),
                "--device", opts["device"],
                *(["--controls", "noise"] if not sets else []),
            )  # fmt: skip
            sets.append(set_name)
        sets.append(f"{sets[0]}-noise")
        if not Study.objects.filter(name=STUDY).exists():
            call_command(
                "create_study",
                "--study", STUDY, "--sets", ",".join(sets), "--design", "partition",
                "--size", "25", "--attention-checks", "2", "--seed", "0",
            )  # fmt: skip
        study = Study.objects.get(name=STUDY)
        if study.status != Study.Status.OPEN:
            call_command(
                "open_study", "--study", STUDY, "--base-url", opts["base_url"], stdout=io.StringIO()
            )
            study.refresh_from_db()
        if opts["simulate_workers"]:
            self._simulate(study, opts["simulate_workers"])
        summary = ", ".join(
            f"{s.name}: {s.stimuli.filter(success=True).count()}/{s.stimuli.count()} successful"
            for s in StimulusSet.objects.filter(name__in=sets)
        )
        link = f"{opts['base_url'].rstrip('/')}/s/{study.key}/"
        self.stdout.write(summary)
        self.stdout.write(self.style.SUCCESS(f"worker link: {link}"))
        self.stdout.write(f"  (add ?worker_id=ID to name a worker; {link}?worker_id=alice)")
        self._staff_account()
        base = opts["base_url"].rstrip("/")
        self.stdout.write(self.style.SUCCESS(f"console: {base}/console/studies/{STUDY}/"))
        self.stdout.write(
            f"  demo credentials: {DEMO_USER} / {DEMO_PASSWORD} (a local demo account; "
            "never use it on a server others can reach)"
        )

    def _staff_account(self) -> None:
        """The demo's staff login for the console and admin (created once, password reset)."""
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()

    def _simulate(self, study: Study, wanted: int) -> None:
        """Top the demo study up to ``wanted`` simulated submissions (idempotent across runs)."""
        already = Lease.objects.filter(
            study=study, worker__simulated=True, status=Lease.Status.SUBMITTED
        ).count()
        added = workers_simulate(study=study, n=max(0, wanted - already), seed=0)
        self.stdout.write(
            self.style.WARNING(
                f"SIMULATED answers: {already + added} simulated workers have submitted "
                f"({added} new); study {study.name} is marked as holding simulated data"
            )
        )
