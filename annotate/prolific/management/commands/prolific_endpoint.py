"""``manage.py prolific_endpoint``: run the in-memory Prolific endpoint for a local trial."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.prolific.testing.endpoint import FakeProlific


class Command(BaseCommand):
    help = (
        "Serve a fake Prolific (researcher API and participant site, in memory, nothing leaves "
        "this machine) until Ctrl-C; point PROLIFIC_API_URL at it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8766)
        parser.add_argument("--hook-url", help="where to POST submission.status.change webhooks")
        parser.add_argument("--hook-secret", default="", help="the webhooks' signing secret")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            fake = FakeProlific(
                host=opts["host"],
                port=opts["port"],
                hook_url=opts["hook_url"],
                hook_secret=opts["hook_secret"],
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {opts['host']}:{opts['port']}: {exc}") from None
        url = fake.url
        self.stdout.write(f"Fake Prolific at {url} (state is lost when it stops)")
        self.stdout.write(
            f"  export PROLIFIC_API_URL={url}/api/v1/ PROLIFIC_API_TOKEN=fake "
            f"PROLIFIC_APP_URL={url}"
        )
        self.stdout.write(
            f"  a participant starts a published study at "
            f"{url}/studies/<study id>/start?PROLIFIC_PID=<any id>, and finishes at "
            f"{url}/submissions/complete?cc=<code> (studies listed at {url}/)"
        )
        if opts["hook_url"]:
            self.stdout.write(f"  webhooks go to {opts['hook_url']}")
        try:
            fake.server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopped")
        finally:
            fake.stop()
