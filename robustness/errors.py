"""The one error vocabulary of Blindspot: every failure we expect is a :class:`BlindspotError`.

Each carries a stable ``code`` (for JSON clients), an HTTP ``status`` (for views) and a one-line
``message`` written for whoever reads it. Commands turn it into a one-line ``CommandError``,
views into a 4xx response, in one place each; anything else is a bug and is logged as one.
Plain Python, so the library and both Django halves share it.
"""

from __future__ import annotations


class BlindspotError(Exception):
    """Base: a request that cannot be honoured as made, with a message that says why."""

    code: str = "invalid"
    status: int = 400
    message: str = "This request cannot be done."
    hint: str = ""  # what the reader can do about it (shown under the message)

    def __init__(self, message: str | None = None) -> None:
        text = message or type(self).message
        super().__init__(text)
        self.message = text

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, str]:
        """The body of every JSON refusal: a stable code, the message and the hint."""
        return {"error": self.code, "detail": self.message, "hint": self.hint}


class ConfigError(BlindspotError, ValueError):
    """A bad hyper-parameter or name (an unknown attack, a negative step count, …).

    Also a ``ValueError``, so code that catches bad values the Python way keeps working.
    """

    code = "invalid_config"
