"""Django-side helpers of the load test: build an open study, and check what was stored.

``python bench/loadtest/fixture.py setup --assignments 110`` prints the study key;
``python bench/loadtest/fixture.py verify LEDGER.json`` prints a JSON verdict on lost answers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def setup(assignments: int, checks: int = 2, size: int = 25) -> str:
    """Two synthetic adversarial sets and an attention set → an open partition study."""
    import numpy as np
    from django.core.files.base import ContentFile
    from PIL import Image

    from annotate.models import Stimulus, StimulusSet, opaque_key
    from annotate.studies.creation import study_create
    from annotate.studies.lifecycle import study_open
    from annotate.studies.spec import StudySpec
    from robustness.registry.models import TrainedModel

    rng = np.random.default_rng(0)
    per_set = assignments * (size - checks)  # partition: each source in one condition

    def make_set(name: str, kind: str, first: int, n: int) -> StimulusSet:
        model, _ = TrainedModel.objects.get_or_create(
            name=f"loadtest-{name}",
            defaults={"arch": "lenet5", "defense": "none", "status": "done"},
        )
        s = StimulusSet.objects.create(
            name=name, kind=kind, model=model, status="done", progress_done=n, progress_total=n
        )
        rows = []
        for i in range(first, first + n):
            buf = io.BytesIO()
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(buf, format="PNG")
            label, target = i % 10, None if kind == "attention" else (i + 1) % 10
            stim = Stimulus(
                set=s, source_index=i, original_label=label, clean_pred=label,
                clean_confidence=0.99, target=target, shown_pred=target if target is not None
                else label, shown_confidence=0.99, success=target is not None,
            )  # fmt: skip
            stim.image.save(f"{opaque_key()}.png", ContentFile(buf.getvalue()), save=False)
            rows.append(stim)
        Stimulus.objects.bulk_create(rows)
        return s

    make_set("loadtest-a", "adversarial", 0, per_set)
    make_set("loadtest-b", "adversarial", 0, per_set)
    make_set("loadtest-attention", "attention", per_set, 100)
    study = study_create(
        spec=StudySpec(
            name="loadtest",
            sets=["loadtest-a", "loadtest-b"],
            design="partition",
            size=size,
            attention_checks=checks,
            attention_set="loadtest-attention",
            seed=0,
        )
    )
    study_open(study=study)
    return study.key


def verify(ledger_path: Path) -> dict:
    """Every submit the server acknowledged must be stored, exactly, once."""
    from annotate.models import Answer, Assignment, Lease

    ledger = json.loads(ledger_path.read_text())
    acknowledged = [o for o in ledger if o.get("submitted")]
    lost = mismatched = 0
    for outcome in acknowledged:
        lease = Lease.objects.filter(completion_code=outcome["code"]).first()
        if lease is None or lease.status != Lease.Status.SUBMITTED:
            lost += len(outcome["answers"])
            continue
        stored = dict(Answer.objects.filter(lease=lease).values_list("item__key", "label"))
        for a in outcome["answers"]:
            if a["item"] not in stored:
                lost += 1
            elif stored[a["item"]] != a["label"]:
                mismatched += 1
    shared = sum(
        1
        for a in Assignment.objects.filter(study__name="loadtest")
        if a.leases.exclude(status=Lease.Status.EXPIRED).count() > 1
    )
    return {
        "flows": len(ledger),
        "submits_acknowledged": len(acknowledged),
        "answers_acknowledged": sum(len(o["answers"]) for o in acknowledged),
        "answers_lost": lost,
        "answers_mismatched": mismatched,
        "assignments_shared": shared,
        "leases_submitted_in_db": Lease.objects.filter(
            study__name="loadtest", status=Lease.Status.SUBMITTED
        ).count(),
    }


def main() -> None:
    import django

    django.setup()
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("setup")
    p.add_argument("--assignments", type=int, default=110)
    p = sub.add_parser("verify")
    p.add_argument("ledger", type=Path)
    args = parser.parse_args()
    if args.cmd == "setup":
        print(setup(args.assignments))
    else:
        print(json.dumps(verify(args.ledger)))


if __name__ == "__main__":
    main()
