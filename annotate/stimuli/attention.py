"""Attention-check sets: clean, unambiguous digits a study mixes into every assignment."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

import numpy as np
import torch

from annotate.errors import StimulusError
from annotate.models import StimulusSet
from annotate.stimuli.imaging import balanced_pick, measure, quantise
from annotate.stimuli.requests import SPLITS, check_set_name
from annotate.stimuli.sources import model_check, sources_load
from annotate.stimuli.storage import (
    check_same,
    run_guarded,
    stimuli_store,
    stimulus_rows,
    stimulus_set_delete,
)
from robustness import runtime
from robustness.registry.models import TrainedModel


def attention_set_generate(
    *,
    model: TrainedModel,
    name: str,
    count: int,
    exclude_sources: Collection[int],
    split: str = "test",
    seed: int = 0,
    min_confidence: float = 0.999,
    device: str | None = None,
) -> StimulusSet:
    """``count`` clean, unambiguous digits of ``split`` for attention checks and fillers, plus
    one more reserved as the instructions' example (idempotent by name).

    Candidates: the model predicts the label with confidence ≥ ``min_confidence`` on the shown
    (8-bit) image, and the source is not in ``exclude_sources``; the pick is class-balanced as
    far as the candidates allow, and seeded. The example (``StimulusSet.example``) is one more
    candidate drawn with the same seed; no study assignment ever shows it, so the example gives
    no check away. The same name with the same parameters returns the existing set; with other
    parameters it is refused.
    """
    check_set_name(name)
    if split not in SPLITS:
        raise StimulusError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if count < 1:
        raise StimulusError(f"count must be positive, got {count}")
    if not 0 < min_confidence <= 1:
        raise StimulusError(f"min_confidence must be in (0, 1], got {min_confidence}")
    excluded = np.unique(np.fromiter((int(i) for i in exclude_sources), dtype=np.int64))
    params = {
        "count": count,
        "min_confidence": min_confidence,
        "split": split,
        "seed": seed,
        "excluded": len(excluded),
        "excluded_sha256": hashlib.sha256(excluded.tobytes()).hexdigest(),
    }
    row = StimulusSet.objects.select_related("model").filter(name=name).first()
    if row is not None:
        check_same(row, StimulusSet.Kind.ATTENTION, model, params)
        if row.status == StimulusSet.Status.DONE:
            return row
        stimulus_set_delete(row=row)  # a broken earlier attempt: small, so start again
    model_check(model)
    loaded = sources_load(model, split, device)
    clean = quantise(loaded.split.x)
    y = loaded.split.y
    pred, conf, _ = measure(loaded.net, clean.to(loaded.device))
    pred, conf = pred.cpu(), conf.cpu()
    ok = ((pred == y) & (conf >= min_confidence)).numpy()
    ok &= ~np.isin(np.arange(len(y)), excluded)
    candidates = np.flatnonzero(ok)
    if len(candidates) < count + 1:
        raise StimulusError(
            f"only {len(candidates)} {split} images of {model.dataset} are classified correctly "
            f"by {model.name} with confidence ≥ {min_confidence} outside the {len(excluded)} "
            f"excluded sources; {count + 1} needed ({count} and the example)"
        )
    pool = candidates[balanced_pick(y.numpy()[candidates], count, seed)]
    rest = np.setdiff1d(candidates, pool)
    example = int(rest[np.random.default_rng(seed).integers(len(rest))])
    chosen = np.sort(np.append(pool, example))
    index = torch.as_tensor(chosen, dtype=torch.long)
    row = StimulusSet.objects.create(
        name=name,
        kind=StimulusSet.Kind.ATTENTION,
        model=model,
        split=split,
        params=params,
        weights_sha256=model.weights_sha256,
        seed=seed,
        device=runtime.describe_device(loaded.device),
        progress_total=count + 1,
    )
    columns = {
        "source_index": chosen.tolist(),
        "original_label": y[index].tolist(),
        "clean_pred": pred[index].tolist(),
        "clean_confidence": conf[index].tolist(),
        "shown_pred": pred[index].tolist(),
        "shown_confidence": conf[index].tolist(),
        "l2_norm": [0.0] * (count + 1),
    }
    rows = stimulus_rows(row, columns)

    def work() -> None:
        stimuli_store(row, rows, clean[index])
        row.example = row.stimuli.get(source_index=example)
        row.save(update_fields=["example", "updated"])

    run_guarded(row, work)
    return row
