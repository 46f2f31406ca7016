"""``manage.py mturk_endpoint``: run the in-memory MTurk endpoint for a local trial."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.mturk.testing.endpoint import FakeMTurk


class Command(BaseCommand):
    help = (
        "Serve a fake MTurk requester endpoint (in memory, nothing leaves this machine) until "
        "Ctrl-C; point MTURK_ENDPOINT_URL at it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            fake = FakeMTurk(host=opts["host"], port=opts["port"])
        except OSError as exc:
            raise CommandError(f"cannot listen on {opts['host']}:{opts['port']}: {exc}") from None
        self.stdout.write(f"Fake MTurk at {fake.url} (state is lost when it stops)")
        self.stdout.write(
            f"  export MTURK_ENDPOINT_URL={fake.url} AWS_ACCESS_KEY_ID=fake "
            "AWS_SECRET_ACCESS_KEY=fake"
        )
        self.stdout.write(
            f"  accept a HIT as a worker: {fake.url}/accept?hitId=HIT&workerId=A1TEST"
        )
        try:
            fake.server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopped")
        finally:
            fake.server.server_close()
