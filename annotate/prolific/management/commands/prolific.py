"""``manage.py prolific``: publish a study on Prolific, reconcile, pay, pause, stop, message.

An adapter over ``annotate.prolific``: every action that spends money prints the mode (LOCAL or
LIVE) and the cost and asks first (``--yes`` skips the question). Known failures end as one line
and a non-zero exit. See docs/prolific.md.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError, CommandParser

from annotate.models import Study
from annotate.prolific import fees, payments, remote
from annotate.prolific.client import mode_label
from annotate.prolific.publish import DEVICES, PublishOptions, publish, publish_plan
from annotate.prolific.reconcile import study_sync
from annotate.providers.cli import SpendingCommand
from annotate.studies.selectors import study_get
from robustness.registry.cli import entity_option, positive_int


def money_arg(text: str) -> Decimal:
    try:
        return fees.parse_money(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def devices_arg(text: str) -> tuple[str, ...]:
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    bad = [d for d in devices if d not in DEVICES]
    if bad or not devices:
        raise argparse.ArgumentTypeError(f"devices are {', '.join(DEVICES)}, comma-separated")
    return devices


def currency_arg(text: str) -> str:
    if not (len(text) == 3 and text.isalpha()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a currency code such as GBP or USD")
    return text.upper()


class Command(SpendingCommand):
    help = (
        "Prolific for a study: publish, sync, approve, reject, bonus, pause, start, stop, "
        "add-places, message, status. PROLIFIC_API_TOKEN; see docs/prolific.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name: str, help_text: str, *, spends: bool = False) -> argparse.ArgumentParser:
            p = sub.add_parser(name, help=help_text, description=help_text)
            entity_option(p, "study", required=True)
            if spends:
                p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
            return p

        p = action("publish", "Create the Prolific study for the open assignments.", spends=True)
        p.add_argument("--reward", required=True, type=money_arg, help="per place, e.g. 1.20")
        p.add_argument("--currency", type=currency_arg, default="GBP")
        p.add_argument("--estimated-minutes", type=positive_int, default=4)
        p.add_argument(
            "--max-minutes", type=positive_int, default=None, help="default 3 × estimate + 2"
        )
        p.add_argument(
            "--places", type=positive_int, default=None, help="default: open assignments"
        )
        p.add_argument("--device", type=devices_arg, default=("desktop", "mobile"))
        p.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="RULE",
            help="a Prolific filter: approval_rate>=95, or NAME=V1,V2",
        )
        p.add_argument(
            "--exclude-previous-participants",
            action="store_true",
            help="not for anyone who took part in an earlier Blindspot study",
        )
        p.add_argument("--title", default="")
        p.add_argument("--description", default="")

        action("sync", "Fetch the submissions from Prolific and report disagreements.")

        p = action("approve", "Approve submissions whose work was submitted here.", spends=True)
        p.add_argument("--passing-only", action="store_true", help="only those the rule keeps")
        p.add_argument("--include-unknown", action="store_true")

        p = action(
            "reject", "Reject submissions (the reason is shown to the participant).", spends=True
        )
        p.add_argument("--submission", action="append", required=True, metavar="ID")
        p.add_argument("--reason", required=True, help="at least 100 characters")
        p.add_argument("--category", default="OTHER", choices=payments.CATEGORIES)

        p = action("bonus", "Pay a bonus per submission (never twice).", spends=True)
        p.add_argument("--amount", required=True, type=money_arg, help="e.g. 0.25")
        p.add_argument("--reason", default="")
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--participant", action="append", metavar="PROLIFIC_PID")
        who.add_argument("--all-approved", action="store_true")

        action("pause", "Pause the Prolific study (nobody new can start).")
        action("start", "Resume a paused Prolific study.")
        action("stop", "Stop the Prolific study for good (those on it may finish).")
        p = action(
            "add-places",
            "Offer more places (default: enough for every open assignment).",
            spends=True,
        )
        p.add_argument("--places", type=positive_int, default=None)
        p = action("message", "Send a message to participants of the study.")
        p.add_argument("--participant", action="append", required=True, metavar="PROLIFIC_PID")
        p.add_argument("--body", required=True)
        action("status", "The study's Prolific state as last synced, and what it cost.")

    def handle(self, *args: Any, **opts: Any) -> None:
        study = study_get(name=opts["study"])
        getattr(self, f"do_{opts['action'].replace('-', '_')}")(study, opts)

    def finish(self, outcome: payments.Outcome) -> None:
        self.say(outcome.lines())
        if not outcome.ok:
            raise CommandError(f"{len(outcome.failed)} {outcome.action} step(s) failed (see above)")

    def do_publish(self, study: Study, opts: dict[str, Any]) -> None:
        options = PublishOptions(
            reward=opts["reward"],
            currency=opts["currency"],
            estimated_minutes=opts["estimated_minutes"],
            max_minutes=opts["max_minutes"],
            places=opts["places"],
            devices=opts["device"],
            filters=tuple(opts["filter"]),
            exclude_previous_participants=opts["exclude_previous_participants"],
            title=opts["title"],
            description=opts["description"],
        )
        plan = publish_plan(study=study, options=options)
        self.say(plan.lines())
        total = fees.show(plan.cost.total, options.currency)
        if not self.confirm(f"Publish? ({mode_label()}, up to {total})", opts):
            self.stdout.write("Cancelled; nothing was published.")
            return
        result = publish(plan=plan)
        self.say(result.lines)
        self.stdout.write(f"Live on Prolific as {result.row.prolific_id}.")

    def do_sync(self, study: Study, opts: dict[str, Any]) -> None:
        self.stdout.write(f"Mode: {mode_label()}")
        report = study_sync(study=study)
        self.say(report.lines())
        resumed = payments.settle_all(study=study)
        self.say(resumed.notes)
        if report.errors or not resumed.ok:
            raise CommandError("some of the study could not be synced (see above)")

    def _total(self, batch: payments.Batch) -> str:
        cost = batch.cost
        return fees.show(cost.total, cost.currency) if cost else "0.00"

    def do_approve(self, study: Study, opts: dict[str, Any]) -> None:
        batch = payments.approve_plan(
            study=study, passing_only=opts["passing_only"], include_unknown=opts["include_unknown"]
        )
        self.pay_batch(
            batch,
            f"Approve {len(batch.rows)} submission(s) for {self._total(batch)}?",
            opts,
            lambda: payments.approve(batch=batch),
        )

    def do_reject(self, study: Study, opts: dict[str, Any]) -> None:
        reason = " ".join(opts["reason"].split())
        if len(reason) < payments.MIN_REJECT_MESSAGE:
            raise CommandError(
                f"--reason must be at least {payments.MIN_REJECT_MESSAGE} characters (Prolific "
                f"shows it to the participant); it has {len(reason)}"
            )
        batch = payments.reject_plan(study=study, submission_ids=opts["submission"])
        self.pay_batch(
            batch,
            f"Reject {len(batch.rows)} submission(s)? Participants see the reason.",
            opts,
            lambda: payments.reject(batch=batch, reason=reason, category=opts["category"]),
        )

    def do_bonus(self, study: Study, opts: dict[str, Any]) -> None:
        resumed = payments.settle_all(study=study)
        if resumed.notes or resumed.failed:
            self.say(resumed.lines())
        batch = payments.bonus_plan(
            study=study,
            amount=opts["amount"],
            participants=opts["participant"] or (),
            all_approved=opts["all_approved"],
        )
        self.pay_batch(
            batch,
            f"Pay {len(batch.rows)} bonus(es) for {self._total(batch)}?",
            opts,
            lambda: payments.bonus(batch=batch, amount=opts["amount"], reason=opts["reason"]),
        )

    def _result(self, result: Any) -> None:
        self.say(result.lines)
        if not result.ok:
            raise CommandError("some of it failed (see above)")

    def do_pause(self, study: Study, opts: dict[str, Any]) -> None:
        self._result(remote.transition(study=study, action="pause"))

    def do_start(self, study: Study, opts: dict[str, Any]) -> None:
        self._result(remote.transition(study=study, action="start"))

    def do_stop(self, study: Study, opts: dict[str, Any]) -> None:
        self._result(remote.transition(study=study, action="stop"))

    def do_add_places(self, study: Study, opts: dict[str, Any]) -> None:
        row = remote.published(study)
        wanted = opts["places"]
        shown = f"{wanted} place(s)" if wanted else "places for every open assignment"
        cost = fees.cost(fees.from_minor(row.reward), wanted or 1, row.currency)
        each = fees.show(cost.total / (wanted or 1), row.currency)
        if not self.confirm(f"Add {shown} at {each} each ({mode_label()})?", opts):
            self.stdout.write("Cancelled; nothing was done.")
            return
        self._result(remote.add_places(study=study, places=wanted))

    def do_message(self, study: Study, opts: dict[str, Any]) -> None:
        self._result(
            remote.message(study=study, body=opts["body"], participants=opts["participant"])
        )

    def do_status(self, study: Study, opts: dict[str, Any]) -> None:
        self.say(remote.status_lines(study=study))
        self.stdout.write(payments.spend_line(payments.study_spend(study=study)))
