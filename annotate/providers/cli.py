"""What every provider's management command shares: lines out, and asking before spending."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError

from robustness.registry.cli import BlindspotCommand


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
