"""The Prolific participant handshake: arrive, consent, resume, and go back with a code.

Participants arrive with ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID``. ``SESSION_ID`` is
the submission's id: it is the attempt id that binds one Blindspot lease (a reload, or the same
submission in another tab, gets the same images); a bare ``PROLIFIC_PID`` never does. The lease
never outlives Prolific's maximum time for the submission. A finished participant goes to
Prolific's completion URL with the study's completion code; one who declines, with the
"no consent" code, which returns the submission.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate import errors
from annotate.models import LIVE, Lease, Study
from annotate.prolific.client import app_url
from annotate.prolific.models import ProlificStudy, ProlificSubmission
from annotate.prolific.publish import PROVIDER
from annotate.work.leases import lease_acquire

logger = logging.getLogger(__name__)

#: What the lease keeps in hand before Prolific's own limit (time to reach the completion URL).
DEADLINE_MARGIN = dt.timedelta(seconds=60)


class UnknownProlificStudy(errors.WorkError):
    code, status = "unknown_prolific_study", 404
    message = "This link does not belong to a Prolific study of ours. Please return the study."


class OpenFromProlific(errors.WorkError):
    code, status = "open_from_prolific", 400
    message = (
        "Please open this study from Prolific: the link is missing your Prolific session. "
        "If you came from Prolific, go back and press 'Open study in a new window' again."
    )


class SessionMismatch(errors.WorkError):
    code, status = "session_mismatch", 403
    message = "This Prolific session belongs to someone else. Please open the study from Prolific."


class PreviousParticipant(errors.AlreadyParticipated):
    message = (
        "You took part in an earlier study of ours, so you cannot take this one. Thank you! "
        "Please return the study on Prolific."
    )


@dataclass(frozen=True)
class Arrival:
    """What Prolific put on the study link."""

    participant_id: str
    study_id: str
    session_id: str

    @property
    def complete(self) -> bool:
        return bool(self.participant_id and self.study_id and self.session_id)


def remote_study(study: Study, arrival: Arrival) -> ProlificStudy:
    """The Prolific study of ``study`` the participant came from; refused if it is not ours."""
    row = ProlificStudy.objects.filter(study=study, prolific_id=arrival.study_id).first()
    if row is None or not arrival.study_id:
        raise UnknownProlificStudy()
    return row


def bound_lease(study: Study, arrival: Arrival) -> Lease | None:
    """The live lease this submission (session id + participant) holds in ``study``."""
    row = (
        ProlificSubmission.objects.select_related("lease__study")
        .filter(
            prolific_study__study=study,
            submission_id=arrival.session_id,
            participant_id=arrival.participant_id,
        )
        .first()
    )
    if row is not None and row.lease is not None and row.lease.status in LIVE:
        return row.lease
    return None


def accept_lease(*, study: Study, arrival: Arrival) -> Lease:
    """Lease (or resume) the assignment for a consenting participant's submission."""
    if not arrival.complete:
        raise OpenFromProlific()
    remote = remote_study(study, arrival)
    existing = ProlificSubmission.objects.filter(submission_id=arrival.session_id).first()
    if existing is not None and existing.participant_id != arrival.participant_id:
        raise SessionMismatch()
    if (lease := bound_lease(study, arrival)) is not None:
        return lease
    if (
        study.provider_options.get("exclude_previous_workers")
        and Lease.objects.filter(
            worker__external_id=arrival.participant_id, status=Lease.Status.SUBMITTED
        )
        .exclude(study=study)
        .exists()
    ):
        raise PreviousParticipant()
    started = existing.started_at if existing is not None and existing.started_at else None
    deadline = (started or timezone.now()) + dt.timedelta(minutes=remote.max_minutes)
    lease = lease_acquire(
        study=study,
        worker_id=arrival.participant_id,
        attempt=arrival.session_id,
        provider_ref=arrival.session_id,
        source=PROVIDER,
        deadline=deadline - DEADLINE_MARGIN,
    )
    _bind(remote, arrival, lease)
    return lease


def _bind(remote: ProlificStudy, arrival: Arrival, lease: Lease) -> None:
    """Record submission → lease (the same submission's concurrent request may have done it)."""
    defaults = {"prolific_study": remote, "participant_id": arrival.participant_id, "lease": lease}
    try:
        with transaction.atomic():
            row, created = ProlificSubmission.objects.update_or_create(
                submission_id=arrival.session_id,
                defaults=defaults,
                create_defaults={**defaults, "status": ProlificSubmission.Status.ACTIVE},
            )
    except IntegrityError:
        row = ProlificSubmission.objects.get(submission_id=arrival.session_id)
    logger.info(
        "prolific %s: %s bound to lease %s", row.submission_id, row.participant_id, lease.pk
    )


def completion_url(code: str) -> str:
    """Prolific's completion URL for ``code``."""
    return f"{app_url()}/submissions/complete?{urlencode({'cc': code})}"


def site_origin() -> str:
    parts = urlsplit(app_url())
    return f"{parts.scheme}://{parts.netloc}"


def completion_for(lease: Lease) -> str | None:
    """The completion URL for a submitted lease of a Prolific submission (None: not Prolific's)."""
    row = (
        ProlificSubmission.objects.select_related("prolific_study")
        .filter(lease=lease)
        .order_by("-updated", "-pk")
        .first()
    )
    return completion_url(row.prolific_study.completion_code) if row is not None else None


def decline_url(study: Study, arrival: Arrival) -> str | None:
    """Where a participant who does not consent goes: the "no consent" code returns the study."""
    if not arrival.complete:
        return None
    row = ProlificStudy.objects.filter(study=study, prolific_id=arrival.study_id).first()
    return completion_url(row.returned_code) if row is not None else None
