"""``manage.py expire_leases``: return overdue leases to the pool (cron; leasing does it too)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.leasing import leases_expire
from annotate.models import Study


class Command(BaseCommand):
    help = "Expire every active lease past its deadline; their draft answers are kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", metavar="NAME", help="only this study (default: all)")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = None
        if opts["study"]:
            study = Study.objects.filter(name=opts["study"]).first()
            if study is None:
                raise CommandError(f"no study named {opts['study']}")
        count = leases_expire(study=study)
        self.stdout.write(f"expired {count} lease{'s' if count != 1 else ''}")
