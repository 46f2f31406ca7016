"""Creating a study from stimulus sets: validate the spec, plan and freeze the design, write.

The layout comes from :mod:`annotate.studies.design`; this module validates the inputs,
freezes the configuration (and its hash) and writes the rows in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction

from annotate.errors import StimulusError, StudyError
from annotate.models import Assignment, Condition, Item, StimulusSet, Study
from annotate.studies import design as designs
from annotate.studies.spec import StudySpec

DEFAULT_TITLE = "Which digit is this?"
DEFAULT_INSTRUCTIONS = (
    "You will see a grid of small images of handwritten digits. Type the digit you see under "
    "each image (0–9); type ? if you cannot tell. Go with your first impression; each image "
    "counts on its own."
)


def _canonical_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the config as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_sets(set_names: list[str]) -> list[StimulusSet]:
    """The named sets in the given order, checked to form one study's conditions."""
    if not set_names:
        raise StudyError("give at least one stimulus set")
    duplicates = sorted({n for n in set_names if set_names.count(n) > 1})
    if duplicates:
        raise StudyError(f"sets named more than once: {', '.join(duplicates)}")
    found = {
        s.name: s for s in StimulusSet.objects.select_related("model").filter(name__in=set_names)
    }
    missing = [n for n in set_names if n not in found]
    if missing:
        raise StudyError(f"no stimulus set named {', '.join(missing)}")
    sets = [found[n] for n in set_names]
    for s in sets:
        if s.status != StimulusSet.Status.DONE:
            raise StudyError(f"set {s.name} is {s.status}, not done")
        if s.kind == StimulusSet.Kind.ATTENTION:
            raise StudyError(f"set {s.name} holds attention checks; pass it as the attention set")
    for what, values in (
        ("splits", [s.split for s in sets]),
        ("datasets", [s.model.dataset for s in sets]),
    ):
        if len(set(values)) > 1:
            listing = ", ".join(f"{s.name}={v}" for s, v in zip(sets, values, strict=True))
            raise StudyError(f"the sets come from different {what}: {listing}")
    return sets


def _columns(s: StimulusSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A set's stimuli as sorted arrays: source index, original label, stimulus id (without
    the set's reserved example digit, which no assignment may show)."""
    stimuli = s.stimuli.exclude(pk=s.example_id) if s.example_id else s.stimuli.all()
    rows = np.array(
        list(stimuli.order_by("source_index").values_list("source_index", "original_label", "id")),
        dtype=np.int64,
    ).reshape(-1, 3)
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _attention_set(
    *,
    name: str,
    attention_set: str | None,
    checks: int,
    needed: int,
    sets: list[StimulusSet],
    exclude: np.ndarray,
    seed: int,
) -> StimulusSet | None:
    """The attention pool (checks and fillers): the named set, or one generated (once) for this
    study when ``needed`` (the most pool digits one assignment takes) is not zero."""
    if attention_set is None and needed == 0:
        return None
    if attention_set is None:
        generated = f"{name}-attention"
        existing = StimulusSet.objects.filter(name=generated).first()
        if existing is None:
            from annotate.stimuli.attention import attention_set_generate  # loads the model

            try:
                existing = attention_set_generate(
                    model=sets[0].model,
                    name=generated,
                    count=max(50, 4 * checks, 2 * needed),
                    exclude_sources=[int(i) for i in exclude],
                    split=sets[0].split,
                    seed=seed,
                )
            except StimulusError as exc:  # too few unambiguous digits, no checkpoint
                raise StudyError(f"cannot make the attention checks: {exc}") from exc
        attention_set = existing.name
    row = StimulusSet.objects.select_related("model").filter(name=attention_set).first()
    if row is None:
        raise StudyError(f"no attention set named {attention_set}")
    if row.kind != StimulusSet.Kind.ATTENTION:
        raise StudyError(f"set {row.name} is a {row.kind} set, not an attention set")
    if row.status != StimulusSet.Status.DONE:
        raise StudyError(f"attention set {row.name} is {row.status}, not done")
    if row.split != sets[0].split or row.model.dataset != sets[0].model.dataset:
        raise StudyError(f"attention set {row.name} comes from another split or dataset")
    return row


def _set_config(s: StimulusSet, n_stimuli: int) -> dict[str, Any]:
    return {
        "name": s.name,
        "kind": s.kind,
        "model": s.model.name,
        "weights_sha256": s.weights_sha256,
        "stimuli": n_stimuli,
    }


def study_create(*, spec: StudySpec) -> Study:
    """Create a draft study from ``spec``: its conditions, assignments and items.

    The design (:func:`annotate.studies.design.plan_study`) and everything it depends on is
    frozen in ``config``, hashed into ``config_hash``. An existing name is returned as is when
    its frozen config is identical (idempotent), and refused otherwise.
    """
    name, size, attention_checks, seed = spec.name, spec.size, spec.attention_checks, spec.seed
    sets = _load_sets(list(spec.sets))
    columns = [_columns(s) for s in sets]
    every_source = np.unique(np.concatenate([c[0] for c in columns]))
    try:
        common, _, _ = designs.common_sources([c[0] for c in columns], [c[1] for c in columns])
    except ValueError as e:
        raise StudyError(str(e)) from None
    n_sources = min(len(common), spec.limit or len(common))
    fillers = 0 if spec.allow_short else designs.max_fillers(n_sources, size - attention_checks)
    attention = _attention_set(
        name=name,
        attention_set=spec.attention_set,
        checks=attention_checks,
        needed=attention_checks + fillers,
        sets=sets,
        exclude=every_source,
        seed=seed,
    )
    pool = _columns(attention) if attention is not None else None
    if pool is not None and len(pool[0]) < attention_checks:
        assert attention is not None  # pool comes from the attention set
        raise StudyError(
            f"attention set {attention.name} has {len(pool[0])} images; "
            f"{attention_checks} checks per assignment need at least that many"
        )
    try:
        plan = designs.plan_study(
            design=spec.design,
            sources=[c[0] for c in columns],
            labels=[c[1] for c in columns],
            size=size,
            attention_checks=attention_checks,
            attention_pool=pool[0] if pool is not None else None,
            raters=spec.raters,
            seed=seed,
            limit=spec.limit,
            allow_short=spec.allow_short,
        )
    except ValueError as e:
        raise StudyError(str(e)) from None

    config = {
        "design": spec.design,
        "size": size,
        "attention_checks": attention_checks,
        "raters": spec.raters,
        "assignments_per_worker": spec.assignments_per_worker,
        "lease_seconds": spec.lease_seconds,
        "seed": seed,
        "limit": spec.limit,
        "allow_short": spec.allow_short,
        "title": spec.title or DEFAULT_TITLE,
        "instructions": DEFAULT_INSTRUCTIONS if spec.instructions is None else spec.instructions,
        "sets": [_set_config(s, len(c[0])) for s, c in zip(sets, columns, strict=True)],
        "attention_set": (
            _set_config(attention, len(pool[0]))
            if attention is not None and pool is not None
            else None
        ),
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
    sets: list[StimulusSet],
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

    # Stimulus ids by (condition, source index); checks and fillers by pool source index.
    stimulus = np.empty(len(plan.source), dtype=np.int64)
    lookups = [(plan.condition == k, c[0], c[2]) for k, c in enumerate(columns)]
    if attention_ids is not None:
        lookups.append((plan.condition < 0, attention_ids[0], attention_ids[2]))
    for rows, sources, ids in lookups:
        stimulus[rows] = ids[np.searchsorted(sources, plan.source[rows])]
    items = (
        Item(
            assignment_id=assignment_ids[a],
            position=p,
            stimulus_id=s,
            condition_id=None if c < 0 else condition_ids[c],
            is_attention=c == designs.ATTENTION_CODE,
            is_filler=c == designs.FILLER_CODE,
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
