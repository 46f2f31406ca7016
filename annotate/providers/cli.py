"""What every provider's management command shares: lines out, and asking before spending."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

from django.core.management.base import CommandError

from robustness.registry.cli import BlindspotCommand


class Batch(Protocol):
    """What a provider's payment plan shows: its lines, its rows and the action's name."""

    action: str
    rows: list[Any]

    def lines(self) -> list[str]: ...


class SpendingCommand(BlindspotCommand):
    """A provider command: ``say`` prints lines; ``confirm`` asks before money is spent
    (``--yes`` skips it; without a terminal and without ``--yes`` it refuses)."""

    stealth_options = ("stdin",)

    def say(self, lines: list[str]) -> None:
        for line in lines:
            self.stdout.write(line)

    def confirm(self, question: str, opts: dict[str, Any]) -> bool:
        """Ask on the terminal; refuse (non-zero exit) when nobody can answer."""
        if opts.get("yes"):
            return True
        stdin = opts.get("stdin")
        if stdin is None:
            if not sys.stdin.isatty():
                raise CommandError(
                    "refusing to spend without confirmation: stdin is not a terminal (pass --yes)"
                )
            stdin = sys.stdin
        self.stdout.write(f"{question} [y/N] ", ending="")
        self.stdout.flush()
        answer = stdin.readline()
        if stdin is not sys.stdin or not sys.stdin.isatty():
            self.stdout.write(answer.strip())  # echo what a pipe answered, ending the line
        return answer.strip().lower() in ("y", "yes")

    def finish(self, outcome: Any) -> None:
        """Report a run's outcome (each provider says what a failure means)."""
        raise NotImplementedError

    def pay_batch(
        self, batch: Batch, question: str, opts: dict[str, Any], run: Callable[[], Any]
    ) -> None:
        """Show the batch, ask, then run it and report (non-zero exit if any call failed)."""
        self.say(batch.lines())
        if not batch.rows:
            self.stdout.write(f"Nothing to {batch.action}.")
            return
        if not self.confirm(question, opts):
            self.stdout.write("Cancelled; nothing was done.")
            return
        self.finish(run())
