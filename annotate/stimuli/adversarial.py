"""High-confidence adversarial sets: the thesis's targeted attack, seen through 8 bits.

What a worker sees is what is recorded: images are quantised to 8 bits, the attack runs on the
model through that quantisation (:class:`~annotate.stimuli.imaging.EightBit`), and prediction
and confidence are measured again on the quantised image and stored. Chunks are committed as
they finish, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from annotate.errors import StimulusError
from annotate.models import Stimulus, StimulusSet
from annotate.stimuli.controls import control_sets_generate
from annotate.stimuli.imaging import EightBit, l2, measure, quantise
from annotate.stimuli.requests import StimulusRequest
from annotate.stimuli.sources import Loaded, model_check, sources_load
from annotate.stimuli.storage import (
    Progress,
    check_same,
    done_sources,
    is_complete,
    run_guarded,
    stimuli_store,
    stimulus_rows,
    stimulus_set_delete,
)
from robustness import runtime
from robustness.attacks.high_confidence import HighConfidence
from robustness.registry.models import TrainedModel
from robustness.registry.selectors import model_get


def stimulus_set_check(
    *, request: StimulusRequest, replace_hint: str = "; pass --replace"
) -> TrainedModel:
    """Check a request against the registry without running it; its model when all is well.

    Refuses an unknown or unfinished model, and an existing set of the name made with other
    parameters (unless ``request.replace``; ``replace_hint`` ends that message). The console
    checks before it starts a job.
    """
    model = model_get(name=request.model)
    if model is None:
        raise StimulusError(f"no model named {request.model!r}; see manage.py models")
    model_check(model)
    row = StimulusSet.objects.select_related("model").filter(name=request.set_name).first()
    if row is not None and not request.replace:
        check_same(row, StimulusSet.Kind.ADVERSARIAL, model, request.params(), hint=replace_hint)
    return model


def stimulus_set_generate(
    *,
    request: StimulusRequest,
    device: str | None = None,
    progress: Progress | None = None,
    span: tuple[int, int] | None = None,
) -> StimulusSet:
    """Generate, continue or (when complete) return the set a request names, then its controls.

    Chunks of ``request.batch_size`` are committed as they finish, and ``progress(name, done,
    total)`` is called at the start and after each chunk. The same name with other parameters
    is refused unless ``request.replace``. ``span = (lo, hi)`` attacks only those source
    indices (one chunk of a job-queue fan-out): the set is done, and its controls made, when the
    chunk that completes it lands.
    """
    model = stimulus_set_check(request=request)
    row = StimulusSet.objects.select_related("model").filter(name=request.set_name).first()
    if row is not None and request.replace:
        stimulus_set_delete(row=row)
        row = None
    if row is None or not is_complete(row, row.progress_total):
        row = _fill_adversarial(
            model, request.set_name, row, request.params(), device, progress, span
        )
    if span is not None and not is_complete(row, row.progress_total):
        return row  # other chunks are still on their way; the last one makes the controls
    if request.controls:
        control_sets_generate(parent=row, kinds=request.controls, device=device, progress=progress)
    return row


def _fill_adversarial(
    model: TrainedModel,
    name: str,
    row: StimulusSet | None,
    params: dict[str, Any],
    device: str | None,
    progress: Progress | None,
    span: tuple[int, int] | None = None,
) -> StimulusSet:
    """Attack the source images the set does not have yet (of ``span``, if given), one
    committed chunk at a time."""
    loaded = sources_load(model, params["split"], device)
    loaded.split = loaded.split.limit(params["limit"])
    n = len(loaded.split)
    if row is None:
        row, _ = StimulusSet.objects.get_or_create(  # chunks of one set may start together
            name=name,
            defaults=dict(
                kind=StimulusSet.Kind.ADVERSARIAL,
                model=model,
                split=params["split"],
                params=params,
                weights_sha256=model.weights_sha256,
                seed=params["seed"],
                progress_total=n,
            ),
        )
    row.device = runtime.describe_device(loaded.device)
    row.save(update_fields=["device", "updated"])
    attack = HighConfidence(
        target=params["target"],
        confidence=params["confidence"],
        steps=params["steps"],
        clip=params["clip"],
        overshoot=params["overshoot"],
        seed=params["seed"],
        chunk_size=params["batch_size"],
    )
    targets = None
    if params["target"] == "random":
        targets = _random_targets(loaded.split.y, loaded.num_classes, params["seed"])
    sources = np.arange(n) if span is None else np.arange(max(0, span[0]), min(n, span[1]))
    missing = sources[~np.isin(sources, done_sources(row))]
    size = params["batch_size"]

    def work() -> None:
        if progress is not None:
            progress(row.name, n - len(missing), n)
        for start in range(0, len(missing), size):
            chunk = missing[start : start + size]
            rows, shown, clean = _adversarial_chunk(
                loaded, attack, row, chunk, targets, params["confidence"]
            )
            stimuli_store(row, rows, shown, clean)
            if progress is not None:
                progress(row.name, row.progress_done, n)

    run_guarded(row, work, complete=lambda: row.stimuli.count() >= n)
    return row


def _random_targets(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """Uniform targets ≠ y for every source image from one CPU generator, whatever the chunks."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, (len(y),), generator=gen)
    return (y.cpu() + shift) % num_classes


def _adversarial_chunk(
    loaded: Loaded,
    attack: HighConfidence,
    row: StimulusSet,
    sources: np.ndarray,
    targets: torch.Tensor | None,
    confidence: float | str,
) -> tuple[list[Stimulus], torch.Tensor, torch.Tensor]:
    """Attack the (8-bit) clean images of ``sources``; measure everything on the shown images."""
    index = torch.as_tensor(sources, dtype=torch.long)
    clean = quantise(loaded.split.x[index].to(loaded.device))
    y = loaded.split.y[index].to(loaded.device)
    t = None if targets is None else targets[index].to(loaded.device)
    result = attack(EightBit(loaded.net), clean, y, target=t)
    t = result.extras["target"]
    shown = quantise(result.x_adv)
    pred, conf, achieved = measure(loaded.net, shown, t)
    clean_pred, clean_conf, _ = measure(loaded.net, clean)
    assert achieved is not None
    # "original" asks for the clean confidence; what was requested is what is compared.
    requested = (
        clean_conf.double()
        if confidence == "original"
        else torch.full_like(clean_conf, float(confidence), dtype=torch.float64)
    )
    requested = requested.cpu()
    success = (pred == t).cpu() & (achieved.double().cpu() >= requested)
    clean_confidences = clean_conf.tolist()
    columns = {
        "source_index": sources.tolist(),
        "original_label": y.tolist(),
        "clean_pred": clean_pred.tolist(),
        "clean_confidence": clean_confidences,
        "target": t.tolist(),
        "requested_confidence": (
            clean_confidences if confidence == "original" else [float(confidence)] * len(sources)
        ),
        "achieved_confidence": achieved.tolist(),
        "shown_pred": pred.tolist(),
        "shown_confidence": conf.tolist(),
        "l2_norm": l2(shown - clean).tolist(),
        "success": success.tolist(),
        "iterations": result.iterations.tolist(),
    }
    return stimulus_rows(row, columns), shown, clean
