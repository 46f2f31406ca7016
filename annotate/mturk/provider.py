"""Amazon Mechanical Turk behind the recruitment-provider interface: both sides.

Worker side: MTurk frames the study page with ``assignmentId``, ``hitId``, ``workerId`` and
``turkSubmitTo`` (:mod:`annotate.mturk.handshake` binds them to a lease); a finished worker's
assignment is posted back to MTurk's ``externalSubmit``. Requester side: publish, sync, pay,
expire and report through the modules of this app (callers confirm spending beforehand).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.urls import reverse

from annotate.models import Lease, Study
from annotate.mturk import fees, handshake, hits, payments
from annotate.mturk.publish import (
    DEFAULT_PER_HIT,
    PROVIDER,
    PublishOptions,
    publish,
    publish_plan,
)
from annotate.mturk.qualifications import grant_repeat_qualification
from annotate.mturk.reconcile import study_sync
from annotate.providers.base import (
    CostEstimate,
    Handback,
    RecruitmentProvider,
    Result,
    Visitor,
)


def _accept(visitor: Visitor) -> handshake.Accept:
    """MTurk's parameters of a visitor, as the handshake takes them."""
    return handshake.Accept(
        assignment_id=visitor.attempt_id,
        hit_id=visitor.fields.get("hit_id", ""),
        worker_id=visitor.worker_id,
        turk_submit_to=visitor.fields.get("turk_submit_to", ""),
    )


class MTurkProvider(RecruitmentProvider):
    """Amazon Mechanical Turk: HITs of at most 9 assignments, paid through MTurk."""

    name = PROVIDER
    label = "Amazon Mechanical Turk"
    worker_source = PROVIDER
    currency = "USD"

    def estimate_cost(self, *, participants: int, reward: Decimal, minutes: int) -> CostEstimate:
        """Rewards and MTurk's commission as publish would pay it: HITs of DEFAULT_PER_HIT
        assignments (20%; 40% from 10 per HIT), MTurk's historical schedule."""
        full, rest = divmod(participants, DEFAULT_PER_HIT)
        sizes = [DEFAULT_PER_HIT] * full + ([rest] if rest else [])
        cost = fees.rewards_cost((size, Decimal(reward)) for size in sizes)
        return CostEstimate(
            provider=self.label,
            currency=self.currency,
            reward=Decimal(reward),
            participants=participants,
            paid=cost.paid,
            fees=cost.fees,
            notes=(
                f"HITs of {DEFAULT_PER_HIT} assignments; Amazon closed Mechanical Turk on "
                "2026-09-30, so this is its historical fee schedule",
            ),
        )

    # --- worker side --------------------------------------------------------------------

    def identify(self, params: Mapping[str, Any]) -> Visitor:
        worker = self.text(params, "workerId", "worker_id")
        assignment = self.text(params, "assignmentId", "assignment_id")
        fields = {
            "worker_id": worker,
            "assignment_id": assignment,
            "hit_id": self.text(params, "hitId", "hit_id"),
            "turk_submit_to": self.text(params, "turkSubmitTo", "turk_submit_to"),
        }
        visitor = Visitor(worker_id=worker, attempt_id=assignment, fields=fields)
        return Visitor(
            worker_id=worker,
            attempt_id=assignment,
            preview=_accept(visitor).preview,
            fields=fields,
        )

    def frame_ancestors(self, study: Study | None) -> tuple[str, ...]:
        return handshake.FRAME_ANCESTORS

    def resume(self, *, study: Study, visitor: Visitor) -> Lease | None:
        accept = _accept(visitor)
        return handshake.bound_lease(study, accept) if accept.complete else None

    def accept(self, *, study: Study, visitor: Visitor) -> Lease:
        lease = handshake.accept_lease(study=study, accept=_accept(visitor))
        if study.provider_options.get("exclude_previous_workers"):
            grant_repeat_qualification(study=study, worker_id=visitor.worker_id)
        return lease

    def handback(self, lease: Lease) -> Handback | None:
        form = handshake.external_submit(lease)
        if form is None:
            return None
        return Handback(
            site="Mechanical Turk",
            url=form["action"],
            origin=form["origin"],
            method="post",
            fields={
                "assignmentId": form["assignment_id"],
                "completion_code": form["completion_code"],
            },
        )

    # --- requester side -----------------------------------------------------------------

    def console_url(self, study: Study) -> str | None:
        return reverse("mturk:study", args=[study.name])

    def publish(self, *, study: Study, **options: Any) -> Result:
        plan = publish_plan(study=study, options=PublishOptions(**options))
        if plan.empty:
            return Result(lines=[*plan.lines(), "nothing to publish"])
        return Result(lines=[*plan.lines(), *publish(plan=plan).lines()])

    def sync(self, *, study: Study) -> Result:
        report = study_sync(study=study)
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
        outcome = hits.hits_expire(study=study)
        return Result(ok=outcome.ok, lines=outcome.lines())

    def status(self, *, study: Study) -> Result:
        return Result(lines=hits.status_lines(hits.study_status(study=study)))
