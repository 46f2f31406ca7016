"""Recruitment providers behind one small interface, looked up by ``Study.provider``.

``local``: workers arrive by the study link (nothing to publish, sync or pay). ``mturk``: the
requester side in this package. A new provider (Prolific) is one more class in ``PROVIDERS``;
studies and callers do not change. Each method returns a :class:`Result` of lines to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

from annotate.models import Study
from annotate.mturk import hits, payments
from annotate.mturk.publish import PublishOptions, plan_publish, publish
from annotate.mturk.reconcile import sync_study
from annotate.studies import study_link


@dataclass
class Result:
    """What a provider action did, as lines for a command or a console message."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)


class RecruitmentProvider(Protocol):
    """What the console and commands need from a recruiting site."""

    name: str

    def publish(self, *, study: Study, **options: Any) -> Result: ...
    def sync(self, *, study: Study) -> Result: ...
    def approve(
        self, *, study: Study, passing_only: bool = False, feedback: str = ""
    ) -> Result: ...
    def reject(self, *, study: Study, assignment_ids: list[str], reason: str) -> Result: ...
    def bonus(
        self, *, study: Study, amount: Decimal, reason: str, workers: list[str] | None = None
    ) -> Result: ...
    def expire(self, *, study: Study) -> Result: ...
    def status(self, *, study: Study) -> Result: ...


class LocalProvider:
    """Link-based recruiting: publishing means handing out the study link; no payments here."""

    name = "local"
    NOTHING = "local study: workers come by link; there is nothing to {what} here"

    def publish(self, *, study: Study, **options: Any) -> Result:
        link = study_link(study, base_url=getattr(settings, "PUBLIC_BASE_URL", "") or None)
        return Result(lines=[f"Send workers this link: {link}"])

    def sync(self, *, study: Study) -> Result:
        return Result(lines=[self.NOTHING.format(what="sync")])

    def approve(self, *, study: Study, passing_only: bool = False, feedback: str = "") -> Result:
        return Result(lines=[self.NOTHING.format(what="approve; pay through your panel")])

    def reject(self, *, study: Study, assignment_ids: list[str], reason: str) -> Result:
        return Result(lines=[self.NOTHING.format(what="reject")])

    def bonus(
        self, *, study: Study, amount: Decimal, reason: str, workers: list[str] | None = None
    ) -> Result:
        return Result(lines=[self.NOTHING.format(what="bonus; pay through your panel")])

    def expire(self, *, study: Study) -> Result:
        return Result(lines=["local study: close it to stop new workers (close_study)"])

    def status(self, *, study: Study) -> Result:
        return Result(lines=[f"local study {study.name} ({study.status}): {study_link(study)}"])


class MTurkProvider:
    """Amazon Mechanical Turk through this package (callers confirm spending beforehand)."""

    name = "mturk"

    def publish(self, *, study: Study, **options: Any) -> Result:

        plan = plan_publish(study=study, options=PublishOptions(**options))
        if not plan.sizes:
            return Result(lines=[*plan.lines(), "nothing to publish"])
        return Result(lines=[*plan.lines(), *publish(plan=plan).lines()])

    def sync(self, *, study: Study) -> Result:

        report = sync_study(study=study)
        return Result(ok=not report.errors, lines=report.lines())

    def approve(self, *, study: Study, passing_only: bool = False, feedback: str = "") -> Result:

        batch = payments.approve_plan(study=study, passing_only=passing_only)
        outcome = payments.approve(batch=batch, feedback=feedback)
        return Result(ok=outcome.ok, lines=[*batch.lines(), *outcome.lines()])

    def reject(self, *, study: Study, assignment_ids: list[str], reason: str) -> Result:

        batch = payments.reject_plan(study=study, assignment_ids=assignment_ids)
        outcome = payments.reject(batch=batch, reason=reason)
        return Result(ok=outcome.ok, lines=[*batch.lines(), *outcome.lines()])

    def bonus(
        self, *, study: Study, amount: Decimal, reason: str, workers: list[str] | None = None
    ) -> Result:

        batch = payments.bonus_plan(
            study=study, amount=amount, workers=workers or (), all_approved=not workers
        )
        outcome = payments.bonus(batch=batch, amount=amount, reason=reason)
        return Result(ok=outcome.ok, lines=[*batch.lines(), *outcome.lines()])

    def expire(self, *, study: Study) -> Result:

        outcome = hits.expire_hits(study=study)
        return Result(ok=outcome.ok, lines=outcome.lines())

    def status(self, *, study: Study) -> Result:

        return Result(lines=hits.status_lines(hits.study_status(study=study)))


PROVIDERS: dict[str, RecruitmentProvider] = {
    Study.Provider.LOCAL: LocalProvider(),
    Study.Provider.MTURK: MTurkProvider(),
}


class UnknownProvider(LookupError):
    """A study names a provider this installation does not have."""


def provider_for(study: Study) -> RecruitmentProvider:
    """The provider that recruits for ``study``."""
    try:
        return PROVIDERS[study.provider]
    except KeyError:
        raise UnknownProvider(
            f"study {study.name} names an unknown provider {study.provider!r}"
        ) from None
