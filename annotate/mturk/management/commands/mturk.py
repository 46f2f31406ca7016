"""``manage.py mturk``: publish a study on Amazon Mechanical Turk, reconcile, pay, expire, extend.

An adapter over ``annotate.mturk``: every action that spends money prints the mode (SANDBOX or
LIVE) and the cost and asks first (``--yes`` skips the question; without a terminal and without
``--yes`` it refuses). Known failures end as one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError, CommandParser

from annotate.models import Study
from annotate.mturk import fees, hits, payments
from annotate.mturk.client import is_sandbox, mode_label
from annotate.mturk.publish import (
    DEFAULT_AUTO_APPROVE,
    DEFAULT_KEYWORDS,
    DEFAULT_LIFETIME,
    DEFAULT_PER_HIT,
    PublishOptions,
    parse_duration,
    publish,
    publish_plan,
)
from annotate.mturk.reconcile import study_sync
from annotate.providers.cli import SpendingCommand
from annotate.studies.selectors import study_get
from robustness.registry.cli import (
    entity_option,
    positive_float,
    positive_int,
)


def duration_arg(text: str) -> int:
    """argparse type: 90s, 30m, 2h, 3d → seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def money_arg(text: str) -> Decimal:
    """argparse type: dollars with at most two decimals."""
    try:
        return fees.parse_money(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Command(SpendingCommand):
    help = (
        "Amazon Mechanical Turk for a study: publish, sync, approve, reject, bonus, expire, "
        "extend, status. Sandbox unless MTURK_SANDBOX=0; live MTurk closed on 2026-09-30 (recruit "
        "on Prolific). See docs/mturk.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name: str, help_text: str, *, spends: bool = False) -> argparse.ArgumentParser:
            p = sub.add_parser(name, help=help_text, description=help_text)
            entity_option(p, "study", required=True)
            if spends:
                p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
            return p

        p = action("publish", "Create HITs for the study's unleased assignments.", spends=True)
        p.add_argument("--reward", required=True, type=money_arg, help="dollars, e.g. 0.50")
        p.add_argument(
            "--assignments-per-hit",
            type=positive_int,
            default=DEFAULT_PER_HIT,
            help="at most this many workers per HIT (10+ doubles MTurk's fee)",
        )
        p.add_argument(
            "--lifetime",
            type=duration_arg,
            default=DEFAULT_LIFETIME,
            help="how long the HITs can be found, e.g. 3d (default 3d)",
        )
        p.add_argument(
            "--duration",
            type=duration_arg,
            default=None,
            help="time a worker has once they accept (default: the lease time)",
        )
        p.add_argument(
            "--auto-approve",
            type=duration_arg,
            default=DEFAULT_AUTO_APPROVE,
            help="submitted work is approved automatically after this (default 3d)",
        )
        p.add_argument(
            "--qualification",
            action="append",
            default=[],
            metavar="RULE",
            help="approval>=95, approved-hits>=100, locale=US or locale=US,CA",
        )
        p.add_argument(
            "--exclude-previous-workers",
            action="store_true",
            help="hide the HITs from anyone who took part in a Blindspot study",
        )
        p.add_argument("--title", default="")
        p.add_argument("--description", default="")
        p.add_argument("--keywords", default=DEFAULT_KEYWORDS)

        action("sync", "Fetch HITs and assignments from MTurk and report disagreements.")

        p = action(
            "approve", "Approve submitted assignments whose work was submitted here.", spends=True
        )
        p.add_argument(
            "--passing-only",
            action="store_true",
            help="only workers the study's exclusion rule keeps",
        )
        p.add_argument(
            "--include-unknown",
            action="store_true",
            help="also approve assignments with no submitted work here",
        )
        p.add_argument("--feedback", default="", help="a message the worker sees")

        p = action(
            "reject",
            "Reject submitted assignments (the reason is shown to the worker).",
            spends=True,
        )
        p.add_argument("--assignment", action="append", required=True, metavar="ID")
        p.add_argument("--reason", required=True)

        p = action("bonus", "Pay a bonus per submitted or approved assignment.", spends=True)
        p.add_argument("--amount", required=True, type=money_arg, help="dollars, e.g. 0.25")
        p.add_argument("--reason", required=True)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--worker", action="append", metavar="WORKER_ID")
        who.add_argument("--all-approved", action="store_true")

        action("expire", "Expire the study's HITs now (workers already on one may finish).")

        p = action("extend", "Add assignments to each HIT and/or push the expiry.", spends=True)
        p.add_argument("--assignments", type=positive_int, default=0, help="added per HIT")
        p.add_argument("--hours", type=positive_float, default=None, help="expire H hours from now")
        p.add_argument(
            "--hit",
            action="append",
            default=None,
            metavar="HIT_ID",
            help="only these HITs (default: all of the study's)",
        )

        action("status", "HITs, assignments by state, spend and the account balance.")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"])
        getattr(self, f"do_{opts['action']}")(study, opts)

    # --- helpers ----------------------------------------------------------------------------

    def finish(self, outcome: payments.Outcome) -> None:
        self.say(outcome.lines())
        if not outcome.ok:
            raise CommandError(
                f"{len(outcome.failed)} of {len(outcome.done) + len(outcome.failed)} "
                f"{outcome.action} calls failed (see above)"
            )

    # --- actions ----------------------------------------------------------------------------

    def do_publish(self, study: Study, opts: dict[str, Any]) -> None:
        options = PublishOptions(
            reward=opts["reward"],
            assignments_per_hit=opts["assignments_per_hit"],
            lifetime_seconds=opts["lifetime"],
            duration_seconds=opts["duration"],
            auto_approve_seconds=opts["auto_approve"],
            qualifications=tuple(opts["qualification"]),
            exclude_previous_workers=opts["exclude_previous_workers"],
            title=opts["title"],
            description=opts["description"],
            keywords=opts["keywords"],
        )
        plan = publish_plan(study=study, options=options)
        self.say(plan.lines())
        if plan.empty:
            self.stdout.write("Nothing to publish: every assignment is leased or already offered.")
            return
        if not self.confirm(
            f"Publish? ({mode_label(plan.sandbox)}, ${fees.money(plan.cost.total)})", opts
        ):
            self.stdout.write("Cancelled; nothing was published.")
            return
        self.say(publish(plan=plan).lines())

    def do_sync(self, study: Study, opts: dict[str, Any]) -> None:
        self.stdout.write(f"Mode: {mode_label()}")
        note = hits.other_mode_note(study=study, sandbox=is_sandbox())
        if note:
            self.stdout.write(note)
        report = study_sync(study=study)
        self.say(report.lines())
        if report.errors:
            raise CommandError(f"{len(report.errors)} HIT(s) could not be synced (see above)")

    def do_approve(self, study: Study, opts: dict[str, Any]) -> None:
        batch = payments.approve_plan(
            study=study, passing_only=opts["passing_only"], include_unknown=opts["include_unknown"]
        )
        total = fees.money(batch.cost.total) if batch.cost else "0.00"
        self.pay_batch(
            batch,
            f"Approve {len(batch.rows)} assignment(s) for ${total}?",
            opts,
            lambda: payments.approve(batch=batch, feedback=opts["feedback"]),
        )

    def do_reject(self, study: Study, opts: dict[str, Any]) -> None:
        if not opts["reason"].strip():
            raise CommandError("--reason must say why: MTurk shows it to the worker")
        batch = payments.reject_plan(study=study, assignment_ids=opts["assignment"])
        self.pay_batch(
            batch,
            f"Reject {len(batch.rows)} assignment(s)? Workers see the reason.",
            opts,
            lambda: payments.reject(batch=batch, reason=opts["reason"]),
        )

    def do_bonus(self, study: Study, opts: dict[str, Any]) -> None:
        if not opts["reason"].strip():
            raise CommandError("--reason must say why: MTurk shows it to the worker")
        batch = payments.bonus_plan(
            study=study,
            amount=opts["amount"],
            workers=opts["worker"] or (),
            all_approved=opts["all_approved"],
        )
        total = fees.money(batch.cost.total) if batch.cost else "0.00"
        self.pay_batch(
            batch,
            f"Send {len(batch.rows)} bonus(es) for ${total}?",
            opts,
            lambda: payments.bonus(batch=batch, amount=opts["amount"], reason=opts["reason"]),
        )

    def do_expire(self, study: Study, opts: dict[str, Any]) -> None:
        self.stdout.write(f"Mode: {mode_label()}")
        note = hits.other_mode_note(study=study, sandbox=is_sandbox())
        if note:
            self.stdout.write(note)
        self.finish(hits.hits_expire(study=study))

    def do_extend(self, study: Study, opts: dict[str, Any]) -> None:
        plan = hits.extend_plan(
            study=study, assignments=opts["assignments"], hours=opts["hours"], hit_ids=opts["hit"]
        )
        self.say(plan.lines())
        if plan.assignments and not self.confirm(
            f"Extend? ({mode_label(plan.sandbox)}, up to ${fees.money(plan.cost.total)})", opts
        ):
            self.stdout.write("Cancelled; nothing was done.")
            return
        self.finish(hits.extend(plan=plan))

    def do_status(self, study: Study, opts: dict[str, Any]) -> None:
        self.say(hits.status_lines(hits.study_status(study=study)))
