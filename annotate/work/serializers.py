"""Request and response shapes of the worker API, with messages a worker can act on.

Input serializers check only the envelope (a JSON object, the right keys and types); every
answer is then checked against the lease's own items by :mod:`annotate.work.answers`, so the rules
live in one place. A failed check becomes :class:`~annotate.errors.InvalidSubmission` (400),
never a DRF error, so every refusal has the same ``{"error", "detail"}`` form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from annotate import errors


class StrictCharField(serializers.CharField):
    """A string, and only a string (DRF's CharField would turn 5 into "5")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class LeaseInput(serializers.Serializer):
    """POST …/lease: the recruiting panel's worker id, if any (absent or empty: anonymous), and
    this client's attempt id: the same id resumes the same lease, none never resumes one."""

    worker_id = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=100)
    attempt = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=100)


class AnswersInput(serializers.Serializer):
    """PUT/POST …/answers: the answers to autosave, ``[{"item", "label", "ms"?}, …]``."""

    answers = serializers.ListField(child=serializers.JSONField())


class SubmitInput(serializers.Serializer):
    """POST …/submit: optionally the final answers (absent or null: those already saved)."""

    answers = serializers.ListField(child=serializers.JSONField(), required=False, allow_null=True)


class LeaseOutput(serializers.Serializer):
    """The token naming the new (or resumed) lease and the labeling page's URL."""

    token = serializers.CharField()
    url = serializers.CharField()


class SavedOutput(serializers.Serializer):
    """How many items of the lease have an answer after an autosave."""

    answered = serializers.IntegerField()


class SubmitOutput(serializers.Serializer):
    """The completion code to paste into the panel and the page that shows it."""

    completion_code = serializers.CharField()
    done_url = serializers.CharField()


def parse(serializer: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """``data`` validated by ``serializer``; any problem → InvalidSubmission naming the field."""
    if not isinstance(data, Mapping):
        raise errors.InvalidSubmission("The body must be a JSON object.")
    checked = serializer(data=data)
    if not checked.is_valid():
        field, problems = next(iter(checked.errors.items()))
        raise errors.InvalidSubmission(f"'{field}': {_first(problems)}")
    return dict(checked.validated_data)


def _first(problems: Any) -> str:
    """The first message of a (possibly nested) DRF error structure."""
    while isinstance(problems, list | dict) and problems:
        problems = problems[0] if isinstance(problems, list) else next(iter(problems.values()))
    return str(problems)
