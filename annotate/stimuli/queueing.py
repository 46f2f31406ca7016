"""A stimulus set on the job queue: one parent job, one child job per span of source images.

The command (``generate_stimuli --queue``) and the console both queue a set through
:func:`stimulus_set_queue`, so they split it the same way. Each chunk commits as it goes and
the chunk that completes the set makes its controls (:mod:`annotate.tasks`).
"""

from __future__ import annotations

import dataclasses
import math

from django.db import transaction

from annotate.models import StimulusSet
from annotate.stimuli.adversarial import stimulus_set_check
from annotate.stimuli.requests import StimulusRequest
from annotate.stimuli.sources import source_count
from annotate.stimuli.storage import stimulus_set_delete
from robustness.registry import jobs
from robustness.registry.models import Job

MOST_CHUNKS = 4  # the command's default, and the most the console splits a set into
CHUNK_IMAGES = 100  # the console's smallest chunk: below this, loading the model dominates


def chunks_for(images: int, *, most: int = MOST_CHUNKS) -> int:
    """How many chunks the console splits ``images`` sources into: ``most`` at most, fewer for
    small sets (each chunk holds ``CHUNK_IMAGES`` or more), and at least one."""
    return max(1, min(most, math.ceil(images / CHUNK_IMAGES)))


def spans(images: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` contiguous, non-empty ``[lo, hi)`` spans covering ``range(images)``."""
    edges = [round(i * images / chunks) for i in range(chunks + 1)]
    return [(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False) if hi > lo]


def stimulus_set_queue(
    *, request: StimulusRequest, chunks: int | None, device: str | None = None
) -> Job:
    """Queue the set ``request`` names as a parent job with one child per chunk; the parent.

    Checked before anything changes: the request against the registry, then the broker (a
    :class:`~robustness.registry.jobs.QueueUnavailable` when it is down). ``request.replace``
    then deletes the existing set. ``chunks=None`` picks :func:`chunks_for` the set's size;
    never more chunks than images. Call it outside a transaction: workers must see the rows.
    """
    model = stimulus_set_check(request=request)
    images = source_count(model, request.split, request.limit)
    count = min(chunks or chunks_for(images), max(images, 1))
    jobs.broker_check()
    if request.replace:
        row = StimulusSet.objects.filter(name=request.set_name).first()
        if row is not None:
            stimulus_set_delete(row=row)
    params = dataclasses.replace(request, replace=False).to_dict()
    with transaction.atomic():
        parent = jobs.job_create(
            kind="stimuli",
            params={"request": params, "chunks": count, "images": images},
            label=request.set_name,
        )
        children = [
            jobs.job_create(
                kind="stimulus_chunk",
                params={"request": params, "span": [lo, hi], "device": device},
                label=f"{request.set_name} [{lo}, {hi})",
                parent=parent,
            )
            for lo, hi in spans(images, count)
        ]
    for child in children:  # the broker was checked above
        jobs.job_send(child)
    return jobs.parent_rollup(parent.pk)
