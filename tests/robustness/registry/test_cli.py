"""What every command shares: entity flags with old spellings, and the one error mapping."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import CommandParser

from annotate.models import Study
from robustness.errors import BlindspotError
from robustness.registry.cli import BlindspotCommand, entity_option, param_option
from tests.annotate.factories import make_study


def _parser() -> CommandParser:
    parser = CommandParser()
    entity_option(parser, "study", aliases=("--name",), required=True)
    param_option(parser, aliases=("--set",))
    return parser


def test_the_entity_flag_and_its_old_spelling_give_the_same_value(capsys):
    assert _parser().parse_args(["--study", "s"]).study == "s"
    assert capsys.readouterr().err == ""
    assert _parser().parse_args(["--name", "s"]).study == "s"
    err = capsys.readouterr().err
    assert "--name is deprecated; use --study" in err


def test_parameters_append_under_either_spelling(capsys):
    args = _parser().parse_args(["--study", "s", "--param", "a=1", "--set", "b=2"])
    assert args.param == [("a", "1"), ("b", "2")]
    assert "--set is deprecated; use --param" in capsys.readouterr().err


class Refuses(BlindspotCommand):
    interrupted = "stopped {what}; run it again"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--what", default="x")

    def handle(self, *args, **opts) -> None:
        if opts["what"] == "ctrl-c":
            raise KeyboardInterrupt
        raise BlindspotError("one line, no traceback")


def test_a_blindspot_error_becomes_one_command_error():
    with pytest.raises(CommandError, match="^one line, no traceback$"):
        call_command(Refuses(), stdout=io.StringIO())
    with pytest.raises(CommandError, match="^stopped ctrl-c; run it again$"):
        call_command(Refuses(), "--what", "ctrl-c", stdout=io.StringIO())


@pytest.mark.django_db
def test_old_spellings_still_work_in_real_commands(capsys):
    study = make_study(status=Study.Status.DRAFT)
    call_command("open_study", "--name", study.name, stdout=io.StringIO())
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    assert "--name is deprecated; use --study" in capsys.readouterr().err
    call_command("close_study", "--study", study.name, stdout=io.StringIO())
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    with pytest.raises(CommandError, match="no study named nope"):
        call_command("close_study", "--study", "nope")
