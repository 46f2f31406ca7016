"""A Prolific study in the database, as a publish would leave it (no endpoint needed)."""

from __future__ import annotations

from annotate.models import StimulusSet, Study
from annotate.prolific.models import ProlificStudy
from tests.annotate.factories import make_model_row, make_set, make_study


def prolific_study(name: str = "pro", *, max_minutes: int = 20, **options) -> Study:
    """A study of 3 assignments of 5 images, published on Prolific as ``REMOTE-<name>``."""
    model = make_model_row()
    checks = make_set(4, kind=StimulusSet.Kind.ATTENTION, model=model, first_source=900)
    study = make_study(
        [make_set(12, model=model)], n_assignments=3, size=5, attention=checks, name=name
    )
    study.provider = "prolific"
    study.provider_options = dict(options)
    study.save(update_fields=["provider", "provider_options"])
    ProlificStudy.objects.create(
        study=study,
        internal_name=f"blindspot:{study.key}:test",
        prolific_id=f"REMOTE-{name}",
        state=ProlificStudy.State.PUBLISHED,
        remote_status="ACTIVE",
        currency="GBP",
        reward=120,
        estimated_minutes=4,
        max_minutes=max_minutes,
        places=3,
        completion_code="DONE1234",
        returned_code="NOPE5678",
    )
    return study


def arrival(study: Study, pid: str = "P1", session: str = "S1") -> dict[str, str]:
    return {
        "PROLIFIC_PID": pid,
        "STUDY_ID": study.prolific_studies.get().prolific_id,
        "SESSION_ID": session,
    }
