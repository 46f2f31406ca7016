"""``manage.py expire_leases``: return overdue leases to the pool (cron; leasing does it too)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from annotate.studies.selectors import study_get
from annotate.work.leases import leases_expire
from robustness.registry.cli import BlindspotCommand, entity_option


class Command(BlindspotCommand):
    help = "Expire every active lease past its deadline; their draft answers are kept."

    def add_arguments(self, parser: CommandParser) -> None:
        entity_option(parser, "study", help="only this study (default: all)")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"]) if opts["study"] else None
        count = leases_expire(study=study)
        self.stdout.write(f"expired {count} lease{'s' if count != 1 else ''}")
