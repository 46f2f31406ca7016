"""Control sets: the same source images clean, with norm-matched noise, or with the
perturbation flipped, so "% change" can be told apart from "the image is just degraded".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from annotate.errors import StimulusError
from annotate.models import StimulusSet
from annotate.stimuli.imaging import control_images, l2, measure
from annotate.stimuli.requests import check_set_name, parse_controls
from annotate.stimuli.sources import model_check, network_load
from annotate.stimuli.storage import (
    Progress,
    done_sources,
    images_decode,
    is_complete,
    run_guarded,
    stimuli_store,
    stimulus_rows,
)
from robustness import runtime
from robustness.registry.files import device_for


def control_sets_generate(
    *,
    parent: StimulusSet,
    kinds: Sequence[str],
    device: str | None = None,
    progress: Progress | None = None,
) -> list[StimulusSet]:
    """The control sets ``{parent}-{kind}`` on the parent's source images (idempotent).

    Built from the parent's stored 8-bit images: ``clean`` the clean image, ``noise`` Gaussian
    noise with each perturbation's l2 norm, ``flipped`` the perturbation upside down. Each row
    keeps the parent's target and requested confidence; prediction, confidence, p(target) and
    l2 are measured on the control image, and success means prediction = target.
    """
    kinds = parse_controls(kinds)
    if parent.kind != StimulusSet.Kind.ADVERSARIAL:
        raise StimulusError(f"set {parent.name} is a {parent.kind} set, not an adversarial one")
    if parent.status != StimulusSet.Status.DONE:
        raise StimulusError(f"set {parent.name} is {parent.status}; finish it first")
    total = parent.stimuli.count()
    rows: dict[str, StimulusSet | None] = {}
    for kind in kinds:
        name = f"{parent.name}-{kind}"
        check_set_name(name)
        row = StimulusSet.objects.filter(name=name).first()
        if row is not None and (row.kind != kind or row.parent_id != parent.pk):
            raise StimulusError(
                f"a set named {name} exists and is not the {kind} control of {parent.name}"
            )
        rows[kind] = row
    todo = [k for k, r in rows.items() if r is None or not is_complete(r, total)]
    if todo:
        _fill_controls(parent, todo, rows, device, progress)
    found = {s.kind: s for s in StimulusSet.objects.filter(parent=parent, kind__in=kinds)}
    return [found[k] for k in kinds]


def _fill_controls(
    parent: StimulusSet,
    kinds: list[str],
    rows: dict[str, StimulusSet | None],
    device: str | None,
    progress: Progress | None,
) -> None:
    """Build the rows the given control sets miss, measuring each control image on the model."""
    model_check(parent.model)
    torch_device = device_for(device)
    net = network_load(parent.model, torch_device)
    fields = (  # what a control inherits from its parent's stimulus, then its files
        "source_index",
        "original_label",
        "clean_pred",
        "clean_confidence",
        "target",
        "requested_confidence",
        "image",
        "clean_image",
    )
    stored = list(parent.stimuli.order_by("source_index").values_list(*fields))
    if not stored:
        raise StimulusError(f"set {parent.name} has no stimuli to build controls from")
    col = dict(zip(fields, (list(c) for c in zip(*stored, strict=True)), strict=True))
    sources = np.array(col["source_index"], dtype=np.int64)
    adversarial = images_decode(col["image"])
    clean = images_decode(col["clean_image"])
    targets = torch.tensor(col["target"], dtype=torch.long)
    size = int(parent.params.get("batch_size", 500))
    n = len(sources)

    for kind in kinds:
        row = rows[kind]
        if row is None:
            row = StimulusSet.objects.create(
                name=f"{parent.name}-{kind}",
                kind=kind,
                model=parent.model,
                parent=parent,
                split=parent.split,
                params={"control": kind, "parent": parent.name, "parent_params": parent.params},
                weights_sha256=parent.weights_sha256,
                seed=parent.seed,
                progress_total=n,
            )
        row.device = runtime.describe_device(torch_device)
        row.save(update_fields=["device", "updated"])
        images = control_images(kind, clean, adversarial, seed=parent.seed)
        missing = np.flatnonzero(~np.isin(sources, done_sources(row)))

        def work(row: StimulusSet = row, images: torch.Tensor = images, missing=missing) -> None:
            if progress is not None:
                progress(row.name, n - len(missing), n)
            for start in range(0, len(missing), size):
                at = missing[start : start + size]
                pos = torch.as_tensor(at, dtype=torch.long)
                shown = images[pos].to(torch_device)
                t = targets[pos].to(torch_device)
                pred, conf, achieved = measure(net, shown, t)
                assert achieved is not None
                pick = at.tolist()
                columns = {name: [col[name][p] for p in pick] for name in fields[:6]}
                columns.update(
                    achieved_confidence=achieved.tolist(),
                    shown_pred=pred.tolist(),
                    shown_confidence=conf.tolist(),
                    l2_norm=l2(shown - clean[pos].to(torch_device)).tolist(),
                    success=(pred == t).tolist(),
                )
                stimuli_store(row, stimulus_rows(row, columns), shown)
                if progress is not None:
                    progress(row.name, row.progress_done, n)

        run_guarded(row, work)
