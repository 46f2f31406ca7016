"""Stimulus sets for human studies: adversarial examples, their controls and attention checks.

What a worker sees is what is recorded: images are quantised to 8 bits, the model is run again
on the quantised image, and that prediction and confidence are stored. Images are 8-bit PNGs
without metadata chunks, saved through the storage API under random opaque names. Each chunk
is committed as it finishes, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image
from torch import nn

from annotate.models import AdversarialSet, Condition, Item, Stimulus, name_validator, opaque_key
from robustness import load_model, runtime
from robustness.attacks.high_confidence import HighConfidence
from robustness.data import Split
from robustness.models import TrainedModel
from robustness.services import checkpoint_file, load_dataset

Progress = Callable[[str, int, int], None]  # (set name, done, total)

SPLITS = ("test", "valid")
TARGETS = ("closest", "random")
CONTROL_KINDS = ("clean", "noise", "flipped")
# The test-time high-confidence attack (thesis §4.5, methods.md §4.4).
HC_STEPS = 500  # at most 500 iterations
HC_CLIP = 0.1  # each step clipped to ‖r_i‖₂ ≤ 0.1
HC_OVERSHOOT = 0.02  # as DeepFool
EVAL_BATCH = 1000  # images per forward pass when only measuring
_BISECTION_STEPS = 50  # halvings of the noise scale: far below 8-bit resolution
_GROWTH_STEPS = 60  # doublings of the noise scale before a norm counts as out of reach


class StimulusError(ValueError):
    """A stimulus set cannot be generated as asked; the message is one line."""


# --------------------------------------------------------------------------------------------
# Pure helpers (no Django)


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] rounded to the 256 levels of an 8-bit PNG: round(x·255)/255."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as the 8-bit values a PNG stores: round(x·255), clamped first."""
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8)


def png_bytes(pixels: np.ndarray | torch.Tensor) -> bytes:
    """One C×H×W uint8 image as a PNG (grayscale for 1 channel, RGB for 3), no metadata chunks."""
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.detach().cpu().numpy()
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(
            f"expected a uint8 1×H×W or 3×H×W image, got {pixels.dtype} {pixels.shape}"
        )
    array = pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png_pixels(data: bytes) -> np.ndarray:
    """Decode a PNG written by :func:`png_bytes` into a C×H×W uint8 array."""
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("L" if image.mode in ("L", "1", "P") else "RGB"))
    return np.ascontiguousarray(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def _l2(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def _per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


def noise_like(
    perturbation: torch.Tensor, *, clean: torch.Tensor, draws: torch.Tensor
) -> torch.Tensor:
    """Noise along ``draws`` with each perturbation's l2 norm, measured after clipping to the box.

    Returns n = clip(clean + s·d) − clean with ‖n‖₂ = ‖perturbation‖₂ per image (d: draws, unit).
    The clipped norm grows monotonically with s, so s is found by a batched bisection; where the
    box caps the norm below the goal, n is the farthest point of the box along d.
    """
    goal = _l2(perturbation).to(clean.dtype)
    direction = draws / _per_image(_l2(draws).clamp_min(1e-12), draws)

    def noise(scale: torch.Tensor) -> torch.Tensor:
        return (clean + _per_image(scale, clean) * direction).clamp(0, 1) - clean

    lo = torch.zeros_like(goal)
    hi = goal.clone()
    for _ in range(_GROWTH_STEPS):  # grow hi until it reaches the goal (or the box caps it)
        short = _l2(noise(hi)) < goal
        if not short.any():
            break
        hi = torch.where(short, hi * 2, hi)
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        short = _l2(noise(mid)) < goal
        lo = torch.where(short, mid, lo)
        hi = torch.where(short, hi, mid)
    return noise(hi)


def flip_perturbation(perturbation: torch.Tensor) -> torch.Tensor:
    """The perturbation flipped upside down: reversed along the height axis (N×C×H×W or C×H×W)."""
    return perturbation.flip(-2)


def balanced_pick(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` positions into ``labels``, classes as balanced as their sizes allow, seeded.

    Candidates are shuffled, ranked within their class and taken rank by rank (classes in a
    random order within a rank), so class counts differ by at most one until a class runs out.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    shuffled = labels[perm]
    order = np.argsort(shuffled, kind="stable")
    ordered = shuffled[order]
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.searchsorted(ordered, ordered, side="left")
    priority = rng.permutation(int(labels.max(initial=0)) + 1)[shuffled]
    pick = np.lexsort((priority, rank))[:count]
    return np.sort(perm[pick])


# --------------------------------------------------------------------------------------------
# Validation


def parse_confidence(value: float | str) -> float | str:
    """'original' (each image's clean confidence) or a number in (0, 1), from a flag or a caller."""
    text = str(value).strip()
    if isinstance(value, str):
        if text.lower() == "original":
            return "original"
        try:
            value = float(text)
        except ValueError:
            raise StimulusError(
                f"confidence must be 'original' or a number in (0, 1), got {text!r}"
            ) from None
    if isinstance(value, bool) or not 0 < float(value) < 1:
        raise StimulusError(f"confidence must be in (0, 1) or 'original', got {text}")
    return float(value)


def parse_controls(value: str | Iterable[str] | None) -> list[str]:
    """Control kinds from 'clean,noise' or a sequence: checked, deduplicated, in canonical order."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    kinds = {k.strip() for k in items if k.strip()}
    unknown = sorted(kinds - set(CONTROL_KINDS))
    if unknown:
        raise StimulusError(
            f"unknown control {', '.join(unknown)}; choose from {', '.join(CONTROL_KINDS)}"
        )
    return [k for k in CONTROL_KINDS if k in kinds]


def _check_name(name: str) -> None:
    try:
        name_validator(name)
    except ValidationError:
        raise StimulusError(
            f"invalid set name {name!r}: letters, digits, '.', '_', '-' only, at most 100"
        ) from None


def _check_model(model: TrainedModel) -> None:
    if model.status != TrainedModel.Status.DONE:
        raise StimulusError(f"model {model.name!r} is {model.status}, not done")
    if not model.checkpoint:
        raise StimulusError(f"model {model.name!r} has no stored checkpoint")


def _show(value: Any) -> str:
    return "—" if value is None else str(value)


def _differences(stored: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """'key (stored → asked)' for every key whose value differs."""
    return [
        f"{k} ({_show(stored.get(k))} → {_show(asked.get(k))})"
        for k in sorted(set(stored) | set(asked))
        if stored.get(k) != asked.get(k)
    ]


def _check_same(
    row: AdversarialSet, kind: str, model: TrainedModel, params: dict[str, Any], hint: str = ""
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


# --------------------------------------------------------------------------------------------
# Model, data and measurements


@dataclass
class _Loaded:
    net: nn.Module
    split: Split  # on the CPU; chunks move to ``device``
    num_classes: int
    device: torch.device


def _load(model: TrainedModel, split: str, device: str | None) -> _Loaded:
    """The model's network on the device and one split of its dataset, as robustness loads them."""
    torch_device = runtime.resolve_device(device or settings.BLINDSPOT_DEVICE)
    with checkpoint_file(model) as path:
        net = load_model(path, device=torch_device)
    dataset = load_dataset(model.dataset)
    return _Loaded(net, getattr(dataset, split), dataset.num_classes, torch_device)


class EightBit(nn.Module):
    """``net`` seen through 8-bit quantisation: the forward pass runs on round(x·255)/255.

    Gradients pass straight through the rounding, so an attack on this wrapper steps as on
    ``net`` but stops only once the image a worker will see reaches its goal.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + (quantise(x) - x).detach())


@torch.no_grad()
def _measure(
    net: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Prediction, max-softmax and p(target) of ``net`` on ``images`` (batched)."""
    probs = torch.cat(
        [net(images[i : i + EVAL_BATCH]).softmax(1) for i in range(0, len(images), EVAL_BATCH)]
    )
    confidence, pred = probs.max(1)
    p_target = None if targets is None else probs.gather(1, targets[:, None]).squeeze(1)
    return pred, confidence, p_target


# --------------------------------------------------------------------------------------------
# Rows and files


def _image_storage():
    return Stimulus._meta.get_field("image").storage


def _store(
    row: AdversarialSet,
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
        storage = _image_storage()
        for name in saved:
            storage.delete(name)
        raise


def _rows(row: AdversarialSet, columns: dict[str, list]) -> list[Stimulus]:
    """Unsaved Stimulus rows of ``row`` from equally long columns."""
    return [
        Stimulus(set=row, **dict(zip(columns, values, strict=True)))
        for values in zip(*columns.values(), strict=True)
    ]


def _mark(row: AdversarialSet, status: str, error: str = "") -> None:
    row.status = status
    row.error = error
    row.save(update_fields=["status", "error", "updated"])


def _guarded(row: AdversarialSet, work: Callable[[], None]) -> None:
    """Run ``work`` with ``row`` running and record how it ended: done, interrupted or failed.

    A failure is re-raised as StimulusError (one line, naming the set); Ctrl-C as itself.
    """
    _mark(row, AdversarialSet.Status.RUNNING)
    try:
        work()
    except KeyboardInterrupt:
        _mark(row, AdversarialSet.Status.INTERRUPTED, "interrupted; run it again to resume")
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        _mark(row, AdversarialSet.Status.FAILED, text)
        raise StimulusError(f"set {row.name} failed: {text}; run it again to resume") from exc
    _mark(row, AdversarialSet.Status.DONE)


def _done_sources(row: AdversarialSet) -> np.ndarray:
    return np.fromiter(row.stimuli.values_list("source_index", flat=True), dtype=np.int64)


def _complete(row: AdversarialSet, total: int) -> bool:
    return row.status == AdversarialSet.Status.DONE and row.stimuli.count() >= total


def stimulus_set_delete(*, row: AdversarialSet) -> None:
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
    storage = _image_storage()
    for name in files:
        storage.delete(name)


# --------------------------------------------------------------------------------------------
# Adversarial sets


def _random_targets(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """Uniform targets ≠ y for every source image from one CPU generator, whatever the chunks."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, (len(y),), generator=gen)
    return (y.cpu() + shift) % num_classes


def _adversarial_chunk(
    loaded: _Loaded,
    attack: HighConfidence,
    row: AdversarialSet,
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
    pred, conf, achieved = _measure(loaded.net, shown, t)
    clean_pred, clean_conf, _ = _measure(loaded.net, clean)
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
        "l2_norm": _l2(shown - clean).tolist(),
        "success": success.tolist(),
        "iterations": result.iterations.tolist(),
    }
    return _rows(row, columns), shown, clean


def stimulus_set_check(
    *,
    model: TrainedModel,
    name: str | None = None,
    split: str = "test",
    limit: int | None = None,
    target: str = "closest",
    confidence: float | str = "original",
    seed: int = 0,
    batch_size: int = 500,
    steps: int = HC_STEPS,
    replace: bool = False,
    controls: Sequence[str] = (),
    replace_hint: str = "; pass --replace",
) -> tuple[str, dict[str, Any], list[str]]:
    """Validate a generation request without running it: (set name, parameters, control kinds).

    Raises StimulusError for a bad value, an unusable model, or an existing set of that name
    made with other parameters (unless ``replace``; ``replace_hint`` ends that message); the
    console checks before it launches.
    """
    name = name or f"{model.name}-hc"
    _check_name(name)
    if split not in SPLITS:
        raise StimulusError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if target not in TARGETS:
        raise StimulusError(f"target must be 'closest' or 'random', got {target!r}")
    for label, value in (("limit", limit), ("batch size", batch_size), ("steps", steps)):
        if value is not None and value < 1:
            raise StimulusError(f"{label} must be positive, got {value}")
    confidence = parse_confidence(confidence)
    kinds = parse_controls(controls)
    for kind in kinds:
        _check_name(f"{name}-{kind}")
    _check_model(model)
    params = {
        "attack": "hc",
        "steps": steps,
        "clip": HC_CLIP,
        "overshoot": HC_OVERSHOOT,
        "target": target,
        "confidence": confidence,
        "split": split,
        "limit": limit,
        "seed": seed,
        "batch_size": batch_size,
    }

    row = AdversarialSet.objects.select_related("model").filter(name=name).first()
    if row is not None and not replace:
        _check_same(row, AdversarialSet.Kind.ADVERSARIAL, model, params, hint=replace_hint)
    return name, params, kinds


def stimulus_set_generate(
    *,
    model: TrainedModel,
    name: str | None = None,
    split: str = "test",
    limit: int | None = None,
    target: str = "closest",
    confidence: float | str = "original",
    seed: int = 0,
    device: str | None = None,
    batch_size: int = 500,
    steps: int = HC_STEPS,
    replace: bool = False,
    controls: Sequence[str] = (),
    progress: Progress | None = None,
) -> AdversarialSet:
    """Generate, continue or (when complete) return the high-confidence adversarial set ``name``.

    Sources are the first ``limit`` images of ``split`` (name default: ``{model}-hc``); chunks of
    ``batch_size`` are committed as they finish, and ``progress(name, done, total)`` is called at
    the start and after each chunk. The same name with other parameters is refused unless
    ``replace``. ``controls`` then builds those control sets (:func:`control_sets_generate`).
    """
    name, params, kinds = stimulus_set_check(
        model=model,
        name=name,
        split=split,
        limit=limit,
        target=target,
        confidence=confidence,
        seed=seed,
        batch_size=batch_size,
        steps=steps,
        replace=replace,
        controls=controls,
    )
    row = AdversarialSet.objects.select_related("model").filter(name=name).first()
    if row is not None and replace:
        stimulus_set_delete(row=row)
        row = None
    if row is None or not _complete(row, row.progress_total):
        row = _fill_adversarial(model, name, row, params, device, progress)
    if kinds:
        control_sets_generate(parent=row, kinds=kinds, device=device, progress=progress)
    return row


def _fill_adversarial(
    model: TrainedModel,
    name: str,
    row: AdversarialSet | None,
    params: dict[str, Any],
    device: str | None,
    progress: Progress | None,
) -> AdversarialSet:
    """Attack the source images the set does not have yet, one committed chunk at a time."""
    loaded = _load(model, params["split"], device)
    loaded.split = loaded.split.limit(params["limit"])
    n = len(loaded.split)
    if row is None:
        row = AdversarialSet.objects.create(
            name=name,
            kind=AdversarialSet.Kind.ADVERSARIAL,
            model=model,
            split=params["split"],
            params=params,
            weights_sha256=model.weights_sha256,
            seed=params["seed"],
            progress_total=n,
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
    sources = np.arange(n)
    missing = sources[~np.isin(sources, _done_sources(row))]
    size = params["batch_size"]

    def work() -> None:
        if progress is not None:
            progress(row.name, n - len(missing), n)
        for start in range(0, len(missing), size):
            chunk = missing[start : start + size]
            rows, shown, clean = _adversarial_chunk(
                loaded, attack, row, chunk, targets, params["confidence"]
            )
            _store(row, rows, shown, clean)
            if progress is not None:
                progress(row.name, row.progress_done, n)

    _guarded(row, work)
    return row


# --------------------------------------------------------------------------------------------
# Controls


def _decode(names: Sequence[str]) -> torch.Tensor:
    """Stored PNGs as one N×C×H×W float tensor in [0, 1] (file reads: one at a time)."""
    storage = _image_storage()
    pixels = []
    for name in names:
        with storage.open(name, "rb") as handle:
            pixels.append(png_pixels(handle.read()))
    return torch.from_numpy(np.stack(pixels)).float() / 255


def control_images(
    kind: str, clean: torch.Tensor, adversarial: torch.Tensor, *, seed: int
) -> torch.Tensor:
    """The 8-bit images of one control kind, from 8-bit clean images and their attacks.

    ``noise`` draws every image's noise at once from a CPU generator seeded with ``seed``, so a
    resumed run draws the same noise.
    """
    perturbation = adversarial - clean
    if kind == "clean":
        return quantise(clean)
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randn(clean.shape, generator=gen, dtype=clean.dtype).to(clean.device)
        return quantise(clean + noise_like(perturbation, clean=clean, draws=draws))
    if kind == "flipped":
        return quantise(clean + flip_perturbation(perturbation))
    raise StimulusError(f"unknown control {kind}; choose from {', '.join(CONTROL_KINDS)}")


def control_sets_generate(
    *,
    parent: AdversarialSet,
    kinds: Sequence[str],
    device: str | None = None,
    progress: Progress | None = None,
) -> list[AdversarialSet]:
    """The control sets ``{parent}-{kind}`` on the parent's source images (idempotent).

    Built from the parent's stored 8-bit images: ``clean`` the clean image, ``noise`` Gaussian
    noise with each perturbation's l2 norm, ``flipped`` the perturbation upside down. Each row
    keeps the parent's target and requested confidence; prediction, confidence, p(target) and
    l2 are measured on the control image, and success means prediction = target.
    """
    kinds = parse_controls(kinds)
    if parent.kind != AdversarialSet.Kind.ADVERSARIAL:
        raise StimulusError(f"set {parent.name} is a {parent.kind} set, not an adversarial one")
    if parent.status != AdversarialSet.Status.DONE:
        raise StimulusError(f"set {parent.name} is {parent.status}; finish it first")
    total = parent.stimuli.count()
    rows: dict[str, AdversarialSet | None] = {}
    for kind in kinds:
        name = f"{parent.name}-{kind}"
        _check_name(name)
        row = AdversarialSet.objects.filter(name=name).first()
        if row is not None and (row.kind != kind or row.parent_id != parent.pk):
            raise StimulusError(
                f"a set named {name} exists and is not the {kind} control of {parent.name}"
            )
        rows[kind] = row
    todo = [k for k, r in rows.items() if r is None or not _complete(r, total)]
    if todo:
        _fill_controls(parent, todo, rows, device, progress)
    found = {s.kind: s for s in AdversarialSet.objects.filter(parent=parent, kind__in=kinds)}
    return [found[k] for k in kinds]


def _fill_controls(
    parent: AdversarialSet,
    kinds: list[str],
    rows: dict[str, AdversarialSet | None],
    device: str | None,
    progress: Progress | None,
) -> None:
    """Build the rows the given control sets miss, measuring each control image on the model."""
    _check_model(parent.model)
    torch_device = runtime.resolve_device(device or settings.BLINDSPOT_DEVICE)
    with checkpoint_file(parent.model) as path:
        net = load_model(path, device=torch_device)
    fields = (
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
    adversarial = _decode(col["image"])
    clean = _decode(col["clean_image"])
    targets = torch.tensor(col["target"], dtype=torch.long)
    size = int(parent.params.get("batch_size", 500))
    n = len(sources)

    for kind in kinds:
        row = rows[kind]
        if row is None:
            row = AdversarialSet.objects.create(
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
        missing = np.flatnonzero(~np.isin(sources, _done_sources(row)))

        def work(row: AdversarialSet = row, images: torch.Tensor = images, missing=missing) -> None:
            if progress is not None:
                progress(row.name, n - len(missing), n)
            for start in range(0, len(missing), size):
                at = missing[start : start + size]
                pos = torch.as_tensor(at, dtype=torch.long)
                shown = images[pos].to(torch_device)
                t = targets[pos].to(torch_device)
                pred, conf, achieved = _measure(net, shown, t)
                assert achieved is not None
                pick = at.tolist()
                columns = {name: [col[name][p] for p in pick] for name in fields[:6]}
                columns.update(
                    achieved_confidence=achieved.tolist(),
                    shown_pred=pred.tolist(),
                    shown_confidence=conf.tolist(),
                    l2_norm=_l2(shown - clean[pos].to(torch_device)).tolist(),
                    success=(pred == t).tolist(),
                )
                _store(row, _rows(row, columns), shown)
                if progress is not None:
                    progress(row.name, row.progress_done, n)

        _guarded(row, work)


# --------------------------------------------------------------------------------------------
# Attention checks


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
) -> AdversarialSet:
    """``count`` clean, unambiguous digits of ``split`` for attention checks (idempotent by name).

    Candidates: the model predicts the label with confidence ≥ ``min_confidence`` on the shown
    (8-bit) image, and the source is not in ``exclude_sources``; the pick is class-balanced as
    far as the candidates allow, and seeded. The same name with the same parameters returns
    the existing set; with other parameters it is refused.
    """
    _check_name(name)
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
    row = AdversarialSet.objects.select_related("model").filter(name=name).first()
    if row is not None:
        _check_same(row, AdversarialSet.Kind.ATTENTION, model, params)
        if row.status == AdversarialSet.Status.DONE:
            return row
        stimulus_set_delete(row=row)  # a broken earlier attempt: small, so start again
    _check_model(model)
    loaded = _load(model, split, device)
    clean = quantise(loaded.split.x)
    y = loaded.split.y
    pred, conf, _ = _measure(loaded.net, clean.to(loaded.device))
    pred, conf = pred.cpu(), conf.cpu()
    ok = ((pred == y) & (conf >= min_confidence)).numpy()
    ok &= ~np.isin(np.arange(len(y)), excluded)
    candidates = np.flatnonzero(ok)
    if len(candidates) < count:
        raise StimulusError(
            f"only {len(candidates)} {split} images of {model.dataset} are classified correctly "
            f"by {model.name} with confidence ≥ {min_confidence} outside the {len(excluded)} "
            f"excluded sources; {count} needed"
        )
    chosen = candidates[balanced_pick(y.numpy()[candidates], count, seed)]
    index = torch.as_tensor(chosen, dtype=torch.long)
    row = AdversarialSet.objects.create(
        name=name,
        kind=AdversarialSet.Kind.ATTENTION,
        model=model,
        split=split,
        params=params,
        weights_sha256=model.weights_sha256,
        seed=seed,
        device=runtime.describe_device(loaded.device),
        progress_total=count,
    )
    columns = {
        "source_index": chosen.tolist(),
        "original_label": y[index].tolist(),
        "clean_pred": pred[index].tolist(),
        "clean_confidence": conf[index].tolist(),
        "shown_pred": pred[index].tolist(),
        "shown_confidence": conf[index].tolist(),
        "l2_norm": [0.0] * count,
    }
    rows = _rows(row, columns)
    _guarded(row, lambda: _store(row, rows, clean[index]))
    return row
