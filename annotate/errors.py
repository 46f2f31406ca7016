"""Every error the human-study side expects, on the one base :class:`BlindspotError`.

Each has a stable ``code`` (JSON clients), an HTTP ``status`` and a one-line ``message``.
Worker errors (:class:`WorkError`) also carry the ``heading`` and ``hint`` of the page that
shows them; the labeling page's script shows the API's ``detail``, so no message is written
twice. Commands map the base to a one-line error once (``BlindspotCommand``), views once.
"""

from __future__ import annotations

import datetime as dt

from robustness.errors import BlindspotError


class StimulusError(BlindspotError):
    """A stimulus set cannot be generated as asked; the message is one line."""

    code = "stimuli_refused"


class StudyError(BlindspotError):
    """A study cannot be created or changed as asked; the message is one line."""

    code = "study_refused"


# --- what can go wrong for a worker ---------------------------------------------------------


class WorkError(BlindspotError):
    """Base: a request a worker (or a forged client) made that cannot be honoured."""

    code = "invalid"
    status = 400
    message = "This request cannot be processed."
    heading = "Something went wrong"


class StudyNotFound(WorkError):
    code, status, message = "not_found", 404, "There is no study at this address."
    heading, hint = "Study not found", "Please check the link you were given."


class StudyClosed(WorkError):
    code, status, message = "closed", 410, "This study is not taking part right now."
    heading, hint = "This study is closed", "Thank you for your interest."


class StudyFull(WorkError):
    code, status, message = "full", 409, "Every task of this study has been taken. Thank you!"
    heading = "This study is full"
    hint = "If you came from a recruiting site, please return the task there."


class AlreadyParticipated(WorkError):
    code, status = "already_participated", 409
    message = "You have already done as many tasks of this study as a person may."
    heading = "You have already taken part"
    hint = "Thank you! If you came from a recruiting site, please return this task there."


class LeaseHeldElsewhere(WorkError):
    """The worker has an active lease that another client (browser, tab) took: only that
    client may continue it; the message says so and when the lease is released."""

    code, status = "lease_elsewhere", 409
    message = "You already started this task in another browser window or tab."
    heading = "You have started this task already"
    hint = "Please continue it there."

    @classmethod
    def until(cls, expires: dt.datetime) -> LeaseHeldElsewhere:
        """The refusal, with the time (UTC) after which the worker can start again."""
        error = cls()
        error.hint = (
            "Please continue it there. If you closed it, open the study link again after "
            f"{expires.astimezone(dt.UTC):%H:%M} UTC, when it is released, to start afresh."
        )
        return error


class InvalidToken(WorkError):
    code, status, message = "invalid_token", 403, "This task link is not valid."
    heading, hint = "This link is not valid", "Please use the link you were given."


class LeaseExpired(WorkError):
    code, status = "expired", 410
    message = "Your time for this task ran out, so it was returned to the pool."
    heading = "Your time ran out"
    hint = "To start again, open the study link you were given once more."


class InvalidSubmission(WorkError):
    code, status, message = "invalid_answers", 400, "The answers are not valid."
    heading, hint = "This link cannot be used", "Please check the link you were given."


class AlreadySubmitted(WorkError):
    """A change to a submitted lease: its one answer set is final (409)."""

    code, status = "already_submitted", 409
    message = "This task was already submitted with other answers; nothing was changed."


class Throttled(WorkError):
    code, status = "throttled", 429
    message = "Too many people are starting from your network or for this study right now."
    heading, hint = "Please wait a moment", "Please wait a few seconds, then try again."


class PayloadTooLarge(WorkError):
    code, status, message = "too_large", 413, "The request is too large."


class ImageUnavailable(WorkError):
    """A stimulus file the storage cannot read: the server's fault, never the worker's (503)."""

    code, status = "unavailable", 503
    message = "An image of this task is unavailable; please tell us."
