"""Writes for studies: create one from stimulus sets (frozen design), open it, close it.

The layout comes from :mod:`annotate.design`; this module validates the inputs, freezes the
configuration (and its hash) and writes the rows in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from annotate import design as designs
from annotate.models import (
    AdversarialSet,
    Assignment,
    Condition,
    Event,
    Item,
    Study,
    name_validator,
)

DEFAULT_TITLE = "Which digit is this?"
DEFAULT_INSTRUCTIONS = (
    "You will see a grid of small images of handwritten digits. Type the digit you see under "
    "each image (0–9); type ? if you cannot tell. Go with your first impression; each image "
    "counts on its own."
)


class StudyError(ValueError):
    """A study cannot be created or changed as asked; the message is one line."""


def _canonical_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the config as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_sets(set_names: list[str]) -> list[AdversarialSet]:
    """The named sets in the given order, checked to form one study's conditions."""
    if not set_names:
        raise StudyError("give at least one stimulus set")
    duplicates = sorted({n for n in set_names if set_names.count(n) > 1})
    if duplicates:
        raise StudyError(f"sets named more than once: {', '.join(duplicates)}")
    found = {
        s.name: s for s in AdversarialSet.objects.select_related("model").filter(name__in=set_names)
    }
    missing = [n for n in set_names if n not in found]
    if missing:
        raise StudyError(f"no stimulus set named {', '.join(missing)}")
    sets = [found[n] for n in set_names]
    for s in sets:
        if s.status != AdversarialSet.Status.DONE:
            raise StudyError(f"set {s.name} is {s.status}, not done")
        if s.kind == AdversarialSet.Kind.ATTENTION:
            raise StudyError(f"set {s.name} holds attention checks; pass it as the attention set")
    for what, values in (
        ("splits", [s.split for s in sets]),
        ("datasets", [s.model.dataset for s in sets]),
    ):
        if len(set(values)) > 1:
            listing = ", ".join(f"{s.name}={v}" for s, v in zip(sets, values, strict=True))
            raise StudyError(f"the sets come from different {what}: {listing}")
    return sets


def _columns(s: AdversarialSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A set's stimuli as sorted arrays: source index, original label, stimulus id."""
    rows = np.array(
        list(
            s.stimuli.order_by("source_index").values_list("source_index", "original_label", "id")
        ),
        dtype=np.int64,
    ).reshape(-1, 3)
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _attention_set(
    *,
    name: str,
    attention_set: str | None,
    checks: int,
    sets: list[AdversarialSet],
    exclude: np.ndarray,
    seed: int,
) -> AdversarialSet | None:
    """The attention-check set: the named one, or one generated (once) for this study."""
    if attention_set is None and checks == 0:
        return None
    if attention_set is None:
        generated = f"{name}-attention"
        existing = AdversarialSet.objects.filter(name=generated).first()
        if existing is None:
            from annotate.stimuli import attention_set_generate  # heavy: loads the model

            try:
                existing = attention_set_generate(
                    model=sets[0].model,
                    name=generated,
                    count=max(50, 4 * checks),
                    exclude_sources=[int(i) for i in exclude],
                    split=sets[0].split,
                    seed=seed,
                )
            except ValueError as exc:  # StimulusError: too few unambiguous digits, no checkpoint
                raise StudyError(f"cannot make the attention checks: {exc}") from exc
        attention_set = existing.name
    row = AdversarialSet.objects.select_related("model").filter(name=attention_set).first()
    if row is None:
        raise StudyError(f"no attention set named {attention_set}")
    if row.kind != AdversarialSet.Kind.ATTENTION:
        raise StudyError(f"set {row.name} is a {row.kind} set, not an attention set")
    if row.status != AdversarialSet.Status.DONE:
        raise StudyError(f"attention set {row.name} is {row.status}, not done")
    if row.split != sets[0].split or row.model.dataset != sets[0].model.dataset:
        raise StudyError(f"attention set {row.name} comes from another split or dataset")
    return row


def _set_config(s: AdversarialSet, n_stimuli: int) -> dict[str, Any]:
    return {
        "name": s.name,
        "kind": s.kind,
        "model": s.model.name,
        "weights_sha256": s.weights_sha256,
        "stimuli": n_stimuli,
    }


def study_create(
    *,
    name: str,
    set_names: list[str],
    design: str = Study.Design.PARTITION,
    size: int = 25,
    attention_checks: int = 2,
    raters: int = 1,
    assignments_per_worker: int = 1,
    lease_seconds: int = 1800,
    seed: int = 0,
    instructions: str | None = None,
    title: str | None = None,
    attention_set: str | None = None,
    limit: int | None = None,
) -> Study:
    """Create a draft study over the named sets, its conditions, assignments and items.

    The design (:func:`annotate.design.plan_study`) and everything it depends on is frozen in
    ``config``, hashed into ``config_hash``. An existing name is returned as is when its
    frozen config is identical (idempotent), and refused otherwise.
    """
    try:
        name_validator(name)
    except ValidationError:
        raise StudyError(f"{name!r} is not a valid name: letters, digits, '.', '_', '-'") from None
    if design not in Study.Design.values:
        raise StudyError(f"unknown design {design!r}; choose {' or '.join(Study.Design.values)}")
    for label, value in (
        ("size", size),
        ("raters", raters),
        ("assignments per worker", assignments_per_worker),
        ("lease seconds", lease_seconds),
    ):
        if value < 1:
            raise StudyError(f"{label} must be positive, got {value}")
    if limit is not None and limit < 1:
        raise StudyError(f"limit must be positive, got {limit}")
    if not 0 <= attention_checks < size:
        raise StudyError(f"attention checks must be ≥ 0 and below the size {size}")
    if size > 32767 or raters > 32767 or assignments_per_worker > 32767:
        raise StudyError("size, raters and assignments per worker must be below 32768")

    sets = _load_sets(set_names)
    columns = [_columns(s) for s in sets]
    every_source = np.unique(np.concatenate([c[0] for c in columns]))
    attention = _attention_set(
        name=name,
        attention_set=attention_set,
        checks=attention_checks,
        sets=sets,
        exclude=every_source,
        seed=seed,
    )
    pool = _columns(attention) if attention is not None else None
    if pool is not None and len(pool[0]) < attention_checks:
        raise StudyError(
            f"attention set {attention.name} has {len(pool[0])} images; "
            f"{attention_checks} checks per assignment need at least that many"
        )
    try:
        plan = designs.plan_study(
            design=design,
            sources=[c[0] for c in columns],
            labels=[c[1] for c in columns],
            size=size,
            attention_checks=attention_checks,
            attention_pool=pool[0] if pool is not None else None,
            raters=raters,
            seed=seed,
            limit=limit,
        )
    except ValueError as e:
        raise StudyError(str(e)) from None

    config = {
        "design": design,
        "size": size,
        "attention_checks": attention_checks,
        "raters": raters,
        "assignments_per_worker": assignments_per_worker,
        "lease_seconds": lease_seconds,
        "seed": seed,
        "limit": limit,
        "title": title or DEFAULT_TITLE,
        "instructions": instructions if instructions is not None else DEFAULT_INSTRUCTIONS,
        "sets": [_set_config(s, len(c[0])) for s, c in zip(sets, columns, strict=True)],
        "attention_set": _set_config(attention, len(pool[0])) if attention is not None else None,
        "plan": plan.summary(),
    }
    config_hash = _canonical_hash(config)
    existing = Study.objects.filter(name=name).first()
    if existing is not None:
        if existing.config_hash == config_hash:
            return existing
        raise StudyError(
            f"a study named {name} already exists with another configuration "
            f"({existing.config_hash[:12]} ≠ {config_hash[:12]})"
        )
    try:
        return _write(
            name=name,
            config=config,
            config_hash=config_hash,
            plan=plan,
            sets=sets,
            columns=columns,
            attention_ids=pool,
        )
    except IntegrityError:
        if Study.objects.filter(name=name).exists():  # created meanwhile by another process
            raise StudyError(f"a study named {name} was created meanwhile; run again") from None
        raise


@transaction.atomic
def _write(
    *,
    name: str,
    config: dict[str, Any],
    config_hash: str,
    plan: designs.Plan,
    sets: list[AdversarialSet],
    columns: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    attention_ids: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> Study:
    """Insert the study and its rows (bulk), mapping plan columns to stimulus ids."""
    study = Study.objects.create(
        name=name,
        title=config["title"],
        instructions=config["instructions"],
        design=config["design"],
        assignment_size=config["size"],
        attention_checks=config["attention_checks"],
        assignments_per_worker=config["assignments_per_worker"],
        raters_per_image=config["raters"],
        lease_seconds=config["lease_seconds"],
        seed=config["seed"],
        config=config,
        config_hash=config_hash,
    )
    Condition.objects.bulk_create(
        Condition(study=study, set=s, position=k) for k, s in enumerate(sets)
    )
    condition_ids = dict(study.conditions.values_list("position", "id"))
    Assignment.objects.bulk_create(
        (
            Assignment(study=study, index=a, replicate=r, block=b)
            for a, (r, b) in enumerate(
                zip(plan.replicate.tolist(), plan.block.tolist(), strict=True)
            )
        ),
        batch_size=1000,
    )
    assignment_ids = dict(study.assignments.values_list("index", "id"))

    # Stimulus ids by (condition, source index); attention rows (condition −1) by source index.
    stimulus = np.empty(len(plan.source), dtype=np.int64)
    lookups = [(k, c[0], c[2]) for k, c in enumerate(columns)]
    if attention_ids is not None:
        lookups.append((-1, attention_ids[0], attention_ids[2]))
    for k, sources, ids in lookups:
        rows = plan.condition == k
        stimulus[rows] = ids[np.searchsorted(sources, plan.source[rows])]
    items = (
        Item(
            assignment_id=assignment_ids[a],
            position=p,
            stimulus_id=s,
            condition_id=None if c < 0 else condition_ids[c],
            is_attention=c < 0,
        )
        for a, p, s, c in zip(
            plan.assignment.tolist(),
            plan.position.tolist(),
            stimulus.tolist(),
            plan.condition.tolist(),
            strict=True,
        )
    )
    Item.objects.bulk_create(items, batch_size=2000)
    return study


def _transition(*, study: Study, allowed: tuple[str, ...], to: str, event: str) -> Study:
    with transaction.atomic():
        row = Study.objects.select_for_update().get(pk=study.pk)
        if row.status not in allowed:
            raise StudyError(f"study {row.name} is {row.status}; cannot make it {to}")
        now, before = timezone.now(), row.status
        row.status = to
        stamp = "opened" if to == Study.Status.OPEN else "closed"
        setattr(row, stamp, now)
        row.save(update_fields=["status", stamp])
        Event.objects.create(study=row, kind=event, data={"from": before, "to": to})
    for field in ("status", "opened", "closed"):
        setattr(study, field, getattr(row, field))
    return row


def study_open(*, study: Study) -> Study:
    """Open a draft or closed study to workers (records an ``opened`` event)."""
    return _transition(
        study=study,
        allowed=(Study.Status.DRAFT, Study.Status.CLOSED),
        to=Study.Status.OPEN,
        event=Event.Kind.OPENED,
    )


def study_close(*, study: Study) -> Study:
    """Stop giving out an open study's assignments (records a ``closed`` event)."""
    return _transition(
        study=study, allowed=(Study.Status.OPEN,), to=Study.Status.CLOSED, event=Event.Kind.CLOSED
    )


def study_link(
    study: Study, *, request: HttpRequest | None = None, base_url: str | None = None
) -> str:
    """The worker entry URL: absolute from ``request`` or ``base_url``, else a path."""
    path = reverse("annotate:study-entry", kwargs={"study_key": study.key})
    if request is not None:
        return request.build_absolute_uri(path)
    if base_url:
        return base_url.rstrip("/") + path
    return path
