"""Small database fixtures for annotate tests: rows built directly, no training, no attack.

Study layout here is deliberately simple (consecutive chunks); the real designs live in
``annotate.studies.design`` and are tested there.
"""

from __future__ import annotations

import io
import itertools
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from django.core.files import File
from django.core.files.base import ContentFile
from PIL import Image

from annotate.models import (
    Assignment,
    Condition,
    Item,
    Lease,
    Stimulus,
    StimulusSet,
    Study,
    opaque_key,
)
from annotate.work.answers import answers_save, lease_submit
from annotate.work.leases import lease_acquire
from robustness import checkpoint, nets
from robustness.registry.files import dataset_load
from robustness.registry.models import TrainedModel

_counter = itertools.count()


def png_bytes(seed: int) -> bytes:
    """A 28×28 8-bit grayscale PNG of random pixels (no metadata)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def make_model_row(name: str | None = None, defense: str = "none") -> TrainedModel:
    return TrainedModel.objects.create(
        name=name or f"model-{next(_counter)}",
        arch="lenet5",
        defense=defense,
        status=TrainedModel.Status.DONE,
        weights_sha256="ab" * 32,
    )


def make_set(
    n: int = 10,
    *,
    name: str | None = None,
    kind: str = StimulusSet.Kind.ADVERSARIAL,
    model: TrainedModel | None = None,
    first_source: int = 0,
) -> StimulusSet:
    """A finished set of ``n`` stimuli on source images first_source … first_source+n−1."""
    model = model or make_model_row()
    s = StimulusSet.objects.create(
        name=name or f"set-{next(_counter)}",
        kind=kind,
        model=model,
        status=StimulusSet.Status.DONE,
        weights_sha256=model.weights_sha256,
        progress_done=n,
        progress_total=n,
    )
    for i in range(first_source, first_source + n):
        label = i % 10
        target = None if kind in ("clean", "attention") else (label + 1) % 10
        stim = Stimulus(
            set=s,
            source_index=i,
            original_label=label,
            clean_pred=label,
            clean_confidence=0.99,
            target=target,
            requested_confidence=0.99 if target is not None else None,
            achieved_confidence=0.995 if target is not None else None,
            shown_pred=target if target is not None else label,
            shown_confidence=0.995,
            l2_norm=1.5 if target is not None else 0.0,
            success=target is not None,
        )
        stim.image.save(f"{opaque_key()}.png", ContentFile(png_bytes(i)), save=False)
        stim.save()
    return s


def make_study(
    sets: list[StimulusSet] | None = None,
    *,
    n_assignments: int = 4,
    size: int = 5,
    attention: StimulusSet | None = None,
    status: str = Study.Status.OPEN,
    **fields,
) -> Study:
    """An open study whose assignments are consecutive chunks of ``size`` stimuli.

    With ``attention``, the last item of each assignment is an attention check.
    """
    sets = sets or [make_set(n_assignments * size)]
    study = Study.objects.create(
        name=fields.pop("name", f"study-{next(_counter)}"),
        assignment_size=size,
        attention_checks=1 if attention else 0,
        status=status,
        config_hash="0" * 64,
        **fields,
    )
    conditions = [
        Condition.objects.create(study=study, set=s, position=i) for i, s in enumerate(sets)
    ]
    pool = [(c, stim) for c in conditions for stim in c.set.stimuli.order_by("source_index")]
    checks = list(attention.stimuli.all()) if attention else []
    per = size - (1 if attention else 0)
    for a in range(n_assignments):
        assignment = Assignment.objects.create(study=study, index=a, block=a)
        chunk = pool[a * per : (a + 1) * per]
        for pos, (cond, stim) in enumerate(chunk):
            Item.objects.create(assignment=assignment, position=pos, stimulus=stim, condition=cond)
        if attention:
            Item.objects.create(
                assignment=assignment,
                position=len(chunk),
                stimulus=checks[a % len(checks)],
                is_attention=True,
            )
    return study


def work(study: Study, worker_id: str, *, submit: bool = True, offset: int = 0) -> Lease:
    """A worker answering every item with (position + offset) mod 10, submitted or only saved."""
    lease = lease_acquire(study=study, worker_id=worker_id)
    answers = [
        {"item": item.key, "label": str((item.position + offset) % 10), "ms": 700 + item.position}
        for item in lease.assignment.items.all()
    ]
    if submit:
        lease_submit(lease=lease, answers=answers)
    else:
        answers_save(lease=lease, answers=answers[:2])
    return lease


# --- a tiny trained model in the registry (stimulus generation, console forms) ---


@cache
def _trained() -> tuple[dict, dict, str]:
    """A LeNet-5 trained two epochs on 512 synthetic digits: config, weights, hash."""
    ds = dataset_load("synthetic")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nets.build("lenet5")
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for _ in range(2):
            for i in range(0, len(ds.train), 64):
                x, y = ds.train.x[i : i + 64], ds.train.y[i : i + 64]
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return dict(model.blindspot_config), state, checkpoint.weights_sha256(state)


def register_tiny_model(tmp_path: Path, name: str = "tiny", **fields) -> TrainedModel:
    """The trained network as a finished registry entry with a stored checkpoint."""
    config, state, sha = _trained()
    local = checkpoint.save({"arch": config, "model": state}, tmp_path / f"{name}.pt")
    row = TrainedModel.objects.create(
        name=name,
        arch="lenet5",
        defense="none",
        dataset="synthetic",
        weights_sha256=sha,
        status=fields.pop("status", TrainedModel.Status.DONE),
        **fields,
    )
    with open(local, "rb") as handle:
        row.checkpoint.save(f"{name}/{sha[:16]}.pt", File(handle))
    return row
