"""Stimulus sets on disk and in the database: images, rows, how a run ends, deletion.

Images are 8-bit PNGs without metadata chunks, saved through the storage API under random
opaque names; each chunk's rows are committed with its files (files undone if the rows fail),
so an interrupted run continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import transaction

from annotate.errors import StimulusError
from annotate.labels import non_digits
from annotate.models import Condition, Item, Stimulus, StimulusSet, opaque_key
from annotate.models.stimuli import LABEL_FIELDS
from annotate.stimuli.imaging import png_bytes, png_pixels, to_uint8
from robustness.registry.models import TrainedModel

Progress = Callable[[str, int, int], None]  # (set name, done, total): a generation's progress


def image_storage() -> Storage:
    """The storage stimulus images live in (the ``default`` alias, or S3)."""
    return Stimulus._meta.get_field("image").storage


def stimuli_store(
    row: StimulusSet,
    stimuli: list[Stimulus],
    images: torch.Tensor,
    cleans: torch.Tensor | None = None,
) -> None:
    """Save the PNGs under opaque names, then the rows in one transaction; files undone on error."""
    shown = to_uint8(images).cpu().numpy()
    clean = None if cleans is None else to_uint8(cleans).cpu().numpy()
    saved: list[str] = []
    try:
        for i, stim in enumerate(stimuli):
            stim.image.save(f"{opaque_key()}.png", ContentFile(png_bytes(shown[i])), save=False)
            saved.append(stim.image.name)
            if clean is not None:
                data = ContentFile(png_bytes(clean[i]))
                stim.clean_image.save(f"{opaque_key()}.png", data, save=False)
                saved.append(stim.clean_image.name)
        with transaction.atomic():
            Stimulus.objects.bulk_create(stimuli)
            row.progress_done = row.stimuli.count()
            row.save(update_fields=["progress_done", "updated"])
    except BaseException:
        storage = image_storage()
        for name in saved:
            storage.delete(name)
        raise


def stimulus_rows(row: StimulusSet, columns: dict[str, list]) -> list[Stimulus]:
    """Unsaved Stimulus rows of ``row`` from equally long columns.

    Label columns (original, target, predictions) must hold digits 0–9: anything else is refused
    here, naming the field, before a file or row is written.
    """
    for name in LABEL_FIELDS:
        bad = non_digits(columns.get(name, ()))
        if bad:
            raise StimulusError(f"set {row.name}: {name} must be a digit 0–9, got {bad}")
    return [
        Stimulus(set=row, **dict(zip(columns, values, strict=True)))
        for values in zip(*columns.values(), strict=True)
    ]


def run_guarded(
    row: StimulusSet, work: Callable[[], None], complete: Callable[[], bool] | None = None
) -> None:
    """Run ``work`` with ``row`` running and record how it ended: done (when ``complete()``
    says so: a chunk may leave the set to its other chunks), interrupted or failed.

    A failure is re-raised as StimulusError (one line, naming the set); Ctrl-C as itself.
    """
    row.mark(StimulusSet.Status.RUNNING)
    try:
        work()
    except KeyboardInterrupt:
        row.mark(StimulusSet.Status.INTERRUPTED, "interrupted; run it again to resume")
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        row.mark(StimulusSet.Status.FAILED, text)
        raise StimulusError(f"set {row.name} failed: {text}; run it again to resume") from exc
    if complete is None or complete():
        row.mark(StimulusSet.Status.DONE)


def done_sources(row: StimulusSet) -> np.ndarray:
    """The source indices the set already holds (a resumed run skips them)."""
    return np.fromiter(row.stimuli.values_list("source_index", flat=True), dtype=np.int64)


def is_complete(row: StimulusSet, total: int) -> bool:
    """Whether the set finished with all ``total`` stimuli."""
    return row.status == StimulusSet.Status.DONE and row.stimuli.count() >= total


def stimulus_set_delete(*, row: StimulusSet) -> None:
    """Delete a set with its control sets, their stimuli and their image files.

    Refused while any of these sets is a condition of a study or serves its attention checks.
    """
    sets = [*row.controls.all(), row]
    used = Condition.objects.filter(set__in=sets).select_related("study", "set").first()
    if used is not None:
        raise StimulusError(f"set {used.set.name} is used by study {used.study.name!r}")
    item = Item.objects.filter(stimulus__set__in=sets).select_related("assignment__study").first()
    if item is not None:
        raise StimulusError(
            f"set {row.name} is used by study {item.assignment.study.name!r} (attention checks)"
        )
    files = [
        name
        for pair in Stimulus.objects.filter(set__in=sets).values_list("image", "clean_image")
        for name in pair
        if name
    ]
    with transaction.atomic():
        for s in sets:  # controls first: they protect their parent
            s.delete()
    storage = image_storage()
    for name in files:
        storage.delete(name)


def images_decode(names: Sequence[str]) -> torch.Tensor:
    """Stored PNGs as one N×C×H×W float tensor in [0, 1] (file reads: one at a time)."""
    storage = image_storage()
    pixels = []
    for name in names:
        with storage.open(name, "rb") as handle:
            pixels.append(png_pixels(handle.read()))
    return torch.from_numpy(np.stack(pixels)).float() / 255


def _show(value: Any) -> str:
    return "—" if value is None else str(value)


def _differences(stored: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """'key (stored → asked)' for every key whose value differs."""
    return [
        f"{k} ({_show(stored.get(k))} → {_show(asked.get(k))})"
        for k in sorted(set(stored) | set(asked))
        if stored.get(k) != asked.get(k)
    ]


def check_same(
    row: StimulusSet, kind: str, model: TrainedModel, params: dict[str, Any], hint: str = ""
) -> None:
    """Refuse an existing set of another kind, model, weights or parameters (named in the error)."""
    if row.kind != kind:
        raise StimulusError(f"a set named {row.name} exists and is a {row.kind} set")
    differ = _differences(
        {"model": row.model.name, "weights_sha256": row.weights_sha256, **row.params},
        {"model": model.name, "weights_sha256": model.weights_sha256, **params},
    )
    if differ:
        raise StimulusError(
            f"set {row.name} exists with other parameters: {', '.join(differ)}"
            + (f"{hint} to generate it again" if hint else "")
        )
