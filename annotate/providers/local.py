"""The built-in provider: workers come by the study link, from any panel or from nowhere.

A panel names its participant with ``worker_id`` (Prolific's ``PROLIFIC_PID`` is read too, for
panels that only append their own parameter); with no id the worker is anonymous. Payment, if
any, happens on the panel: there is nothing to publish, sync or pay here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from annotate.models import Lease, Study
from annotate.providers.base import RecruitmentProvider, Result, Visitor
from annotate.providers.registry import LOCAL
from annotate.studies.lifecycle import study_link
from annotate.work.leases import lease_acquire


class LocalProvider(RecruitmentProvider):
    """Link-based recruiting: publishing means handing out the study link; no payments here."""

    name = LOCAL
    label = "local (study link)"
    worker_source = "panel"
    api_leasing = True

    def identify(self, params: Mapping[str, Any]) -> Visitor:
        worker = self.text(params, "worker_id", "workerId", "PROLIFIC_PID")
        attempt = self.text(params, "assignment_id", "assignmentId")
        return Visitor(
            worker_id=worker,
            attempt_id=attempt,
            fields={"worker_id": worker, "assignment_id": attempt},
        )

    def accept(self, *, study: Study, visitor: Visitor) -> Lease:
        return lease_acquire(
            study=study,
            worker_id=visitor.worker_id or None,
            attempt=visitor.attempt_id,
            provider_ref=visitor.fields.get("assignment_id", ""),
        )

    def publish(self, *, study: Study, **options: Any) -> Result:
        link = study_link(study, base_url=getattr(settings, "PUBLIC_BASE_URL", "") or None)
        return Result(lines=[f"Send workers this link: {link}"])

    def expire(self, *, study: Study) -> Result:
        return Result(lines=["local study: close it to stop new workers (close_study)"])

    def status(self, *, study: Study) -> Result:
        return Result(lines=[f"local study {study.name} ({study.status}): {study_link(study)}"])
