"""What can go wrong for a worker, as exceptions the API and the pages both translate.

Each carries a stable ``code`` (for JSON clients) and a message written for the worker.
"""

from __future__ import annotations


class WorkError(Exception):
    """Base: a request a worker (or a forged client) made that cannot be honoured."""

    code = "invalid"
    status = 400
    message = "This request cannot be processed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class StudyNotFound(WorkError):
    code, status, message = "not_found", 404, "There is no study at this address."


class StudyClosed(WorkError):
    code, status, message = "closed", 410, "This study is not taking part right now."


class StudyFull(WorkError):
    code, status, message = "full", 409, "Every task of this study has been taken. Thank you!"


class AlreadyParticipated(WorkError):
    code, status = "already_participated", 409
    message = "You have already done as many tasks of this study as a person may."


class InvalidToken(WorkError):
    code, status, message = "invalid_token", 403, "This task link is not valid."


class LeaseExpired(WorkError):
    code, status = "expired", 410
    message = "Your time for this task ran out, so it was returned to the pool."


class InvalidSubmission(WorkError):
    code, status, message = "invalid_answers", 400, "The answers are not valid."


class PayloadTooLarge(WorkError):
    code, status, message = "too_large", 413, "The request is too large."
