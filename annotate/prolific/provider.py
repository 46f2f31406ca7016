"""Prolific behind the recruitment-provider interface: both sides.

Worker side: participants arrive with ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID`` (the
submission, which is the attempt that binds a lease); they finish on Prolific's completion URL
with the study's code, or decline with its "no consent" code. Requester side: publish, sync,
approve, reject, bonus and report through the modules of this app.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.urls import reverse

from annotate.models import Lease, Study
from annotate.prolific import fees, handshake, payments, remote
from annotate.prolific.publish import PROVIDER, PublishOptions, publish, publish_plan
from annotate.prolific.reconcile import study_sync
from annotate.providers.base import (
    CostEstimate,
    Handback,
    RecruitmentProvider,
    Result,
    Visitor,
)


def _arrival(visitor: Visitor) -> handshake.Arrival:
    return handshake.Arrival(
        participant_id=visitor.worker_id,
        study_id=visitor.fields.get("STUDY_ID", ""),
        session_id=visitor.attempt_id,
    )


class ProlificProvider(RecruitmentProvider):
    """Prolific: one study per Blindspot study, places = open assignments, paid through it."""

    name = PROVIDER
    label = "Prolific"
    worker_source = PROVIDER
    currency = "GBP"  # publish's default; prices below are in it

    def estimate_cost(self, *, participants: int, reward: Decimal, minutes: int) -> CostEstimate:
        """Rewards, Prolific's service fee and VAT on the fee (fees.py), and a note when the
        reward is under Prolific's minimum hourly rate."""
        cost = fees.cost(Decimal(reward), participants, self.currency)
        notes = []
        floor = fees.min_hourly(self.currency)
        if floor is not None and minutes > 0 and fees.hourly(reward, minutes) < floor:
            lowest = fees.lowest_reward(self.currency, minutes)
            notes.append(
                f"under Prolific's minimum {fees.show(floor, self.currency)}/hour for {minutes} "
                f"min: pay at least {fees.show(lowest or floor, self.currency)}"
            )
        return CostEstimate(
            provider=self.label,
            currency=cost.currency,
            reward=Decimal(reward),
            participants=participants,
            paid=cost.paid,
            fees=cost.fee,
            vat=cost.vat,
            notes=tuple(notes),
        )

    # --- worker side --------------------------------------------------------------------

    def identify(self, params: Mapping[str, Any]) -> Visitor:
        pid = self.text(params, "PROLIFIC_PID")
        session = self.text(params, "SESSION_ID")
        fields = {
            "PROLIFIC_PID": pid,
            "STUDY_ID": self.text(params, "STUDY_ID"),
            "SESSION_ID": session,
        }
        return Visitor(worker_id=pid, attempt_id=session, fields=fields)

    def resume(self, *, study: Study, visitor: Visitor) -> Lease | None:
        arrival = _arrival(visitor)
        return handshake.bound_lease(study, arrival) if arrival.complete else None

    def accept(self, *, study: Study, visitor: Visitor) -> Lease:
        return handshake.accept_lease(study=study, arrival=_arrival(visitor))

    def handback(self, lease: Lease) -> Handback | None:
        url = handshake.completion_for(lease)
        if url is None:
            return None
        return Handback(site="Prolific", url=url, origin=handshake.site_origin())

    def decline(self, *, study: Study, visitor: Visitor) -> Handback | None:
        url = handshake.decline_url(study, _arrival(visitor))
        if url is None:
            return None
        return Handback(site="Prolific", url=url, origin=handshake.site_origin())

    # --- requester side -----------------------------------------------------------------

    def console_url(self, study: Study) -> str | None:
        return reverse("prolific:study", args=[study.name])

    def publish(self, *, study: Study, **options: Any) -> Result:
        plan = publish_plan(study=study, options=PublishOptions(**options))
        return Result(lines=[*plan.lines(), *publish(plan=plan).lines])

    def sync(self, *, study: Study) -> Result:
        report = study_sync(study=study)
        return Result(ok=not report.errors, lines=report.lines())

    def approve(self, *, study: Study, passing_only: bool = False, feedback: str = "") -> Result:
        batch = payments.approve_plan(study=study, passing_only=passing_only)
        outcome = payments.approve(batch=batch)
        return Result(ok=outcome.ok, lines=[*batch.lines(), *outcome.lines()])

    def reject(self, *, study: Study, assignment_ids: list[str], reason: str) -> Result:
        batch = payments.reject_plan(study=study, submission_ids=assignment_ids)
        outcome = payments.reject(batch=batch, reason=reason)
        return Result(ok=outcome.ok, lines=[*batch.lines(), *outcome.lines()])

    def bonus(
        self, *, study: Study, amount: Decimal, reason: str, workers: list[str] | None = None
    ) -> Result:
        batch = payments.bonus_plan(
            study=study, amount=amount, participants=workers or (), all_approved=not workers
        )
        outcome = payments.bonus(batch=batch, amount=amount, reason=reason)
        return Result(ok=outcome.ok, lines=[*batch.lines(), *outcome.lines()])

    def expire(self, *, study: Study) -> Result:
        return remote.stop(study=study)

    def status(self, *, study: Study) -> Result:
        return Result(lines=remote.status_lines(study=study))
