"""Stimulus generation: the real command path on a tiny synthetic model, end to end.

A LeNet-5 trained for a few seconds on the synthetic digits is registered with a checkpoint
(through ``robustness.checkpoint`` and the model's FileField), so ``generate_stimuli`` loads it
exactly as it would a trained MNIST model.
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image

from annotate.errors import StimulusError
from annotate.models import Condition, Stimulus, StimulusSet, Study
from annotate.stimuli.adversarial import stimulus_set_generate
from annotate.stimuli.attention import attention_set_generate
from annotate.stimuli.controls import control_sets_generate
from annotate.stimuli.imaging import (
    EightBit,
    flip_perturbation,
    noise_like,
    png_bytes,
    png_pixels,
    quantise,
    to_uint8,
)
from annotate.stimuli.requests import StimulusRequest, parse_confidence, parse_controls
from robustness import load_model
from robustness.registry.files import dataset_load
from robustness.registry.models import TrainedModel
from tests.annotate.factories import register_tiny_model as register

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_thread")]

OPAQUE = re.compile(r"^stimuli/[A-Za-z0-9_-]{22}\.png$")


@pytest.fixture
def tiny(tmp_path) -> TrainedModel:
    return register(tmp_path)


@pytest.fixture
def net(tiny):
    return load_model(tiny.checkpoint.path, device="cpu")


def generate(*flags: str) -> None:
    call_command("generate_stimuli", "--model", "tiny", "--device", "cpu", "--no-progress", *flags)


def pixels(field) -> np.ndarray:
    with field.open("rb") as handle:
        return png_pixels(handle.read())


def as_float(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(array)).float().div(255)


def media_files(tmp_path: Path) -> set[str]:
    root = tmp_path / "media"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length
    return kinds


def columns(s: StimulusSet) -> list[tuple]:
    fields = (
        "source_index", "original_label", "clean_pred", "target", "shown_pred", "success",
        "iterations",
    )  # fmt: skip
    return list(s.stimuli.order_by("source_index").values_list(*fields))


def floats(s: StimulusSet) -> np.ndarray:
    fields = ("clean_confidence", "requested_confidence", "achieved_confidence", "l2_norm")
    return np.array(list(s.stimuli.order_by("source_index").values_list(*fields)), dtype=float)


# --------------------------------------------------------------------------------------------
# Pure helpers


def test_quantise_lands_on_the_8_bit_grid_and_rounds_to_nearest():
    x = torch.tensor([0.0, 0.3 / 255, 0.6 / 255, 0.5, 1.0, 1.2, -0.1])
    q = quantise(x)
    assert torch.equal(q * 255, (q * 255).round())
    assert q.tolist()[:3] == [0.0, 0.0, pytest.approx(1 / 255)]
    assert q[-2] == 1.0 and q[-1] == 0.0
    assert (q - x.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-7
    assert to_uint8(x).tolist() == [0, 0, 1, 128, 255, 255, 0]


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_png_round_trips_and_carries_no_metadata(channels, mode):
    pixels_in = np.random.default_rng(channels).integers(0, 256, (channels, 28, 20), np.uint8)
    data = png_bytes(pixels_in)
    assert png_chunks(data) == ["IHDR", "IDAT", "IEND"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == mode and image.size == (20, 28) and image.info == {}
    assert np.array_equal(png_pixels(data), pixels_in)
    with pytest.raises(ValueError):
        png_bytes(pixels_in.astype(np.float32))


def test_eight_bit_wrapper_sees_the_shown_image_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    inner = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(4, 1, 4, 4, requires_grad=True)
    wrapped = EightBit(inner)
    out = wrapped(x)
    assert torch.equal(out, inner(quantise(x)))
    out[:, 0].sum().backward()
    assert torch.allclose(x.grad, inner[1].weight[0].view(1, 1, 4, 4).expand(4, 1, 4, 4))


def test_flip_perturbation_mirrors_the_height_axis():
    r = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    flipped = flip_perturbation(r)
    assert torch.equal(flipped, torch.from_numpy(r.numpy()[:, :, ::-1, :].copy()))


def test_noise_like_matches_each_norm_after_clipping():
    gen = torch.Generator().manual_seed(0)
    shape = (6, 1, 8, 8)
    saturated = torch.rand(shape, generator=gen) < 0.5  # like MNIST's black background
    clean = quantise(torch.where(saturated, 0.0, torch.rand(shape, generator=gen)))
    scale = torch.linspace(0, 0.3, 6).view(-1, 1, 1, 1)
    perturbation = torch.randn(shape, generator=gen) * scale
    draws = torch.randn(shape, generator=gen)
    noise = noise_like(perturbation, clean=clean, draws=draws)
    goal = perturbation.flatten(1).norm(dim=1)
    assert torch.allclose(noise.flatten(1).norm(dim=1), goal, atol=1e-5)
    # clipping alone would have fallen short of the norm
    naive = (clean + draws * (goal / draws.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)).clamp(0, 1)
    assert ((naive - clean).flatten(1).norm(dim=1)[1:] < goal[1:] - 1e-3).all()
    assert (clean + noise).min() >= 0 and (clean + noise).max() <= 1
    assert torch.equal(noise[0], torch.zeros_like(noise[0]))  # zero perturbation, zero noise
    # out of reach: the farthest point of the box along the direction
    far = noise_like(perturbation * 100, clean=clean, draws=draws)[1:]
    corner = torch.where(draws > 0, 1.0, torch.where(draws < 0, 0.0, clean))[1:] - clean[1:]
    assert torch.allclose(far, corner, atol=1e-4)


@pytest.mark.parametrize(
    "parse,text", [(parse_confidence, "1.5"), (parse_confidence, "high"),
                   (parse_confidence, "0"), (parse_controls, "clean,blur")],
)  # fmt: skip
def test_parsers_reject_bad_values_with_a_message(parse, text):
    with pytest.raises(StimulusError, match=re.escape(text.split(",")[-1])):
        parse(text)


def test_parsers_accept_good_values():
    assert parse_confidence("original") == "original"
    assert parse_confidence("0.95") == 0.95
    assert parse_controls("flipped, clean") == ("clean", "flipped")


# --------------------------------------------------------------------------------------------
# The command, end to end


def test_rows_record_what_the_stored_png_shows(tiny, net, tmp_path, capsys):
    generate("--limit", "12", "--batch-size", "5")
    s = StimulusSet.objects.get(name="tiny-hc")
    assert "tiny-hc (adversarial): 12 stimuli" in capsys.readouterr().out
    assert (s.status, s.progress_done, s.progress_total) == ("done", 12, 12)
    assert s.weights_sha256 == tiny.weights_sha256 and s.device.startswith("cpu")
    assert s.params["steps"] == 500 and s.params["clip"] == 0.1
    assert s.params["overshoot"] == 0.02 and s.params["confidence"] == "original"
    assert {"target", "split", "limit", "seed", "batch_size"} <= set(s.params)
    rows = list(s.stimuli.order_by("source_index"))
    assert [r.source_index for r in rows] == list(range(12))

    shown = as_float([pixels(r.image) for r in rows])
    clean = as_float([pixels(r.clean_image) for r in rows])
    test = dataset_load("synthetic").test
    assert torch.equal(clean, quantise(test.x[:12]))
    with torch.no_grad():
        probs = net(shown).softmax(1)
        clean_probs = net(clean).softmax(1)
    target = torch.tensor([r.target for r in rows])
    assert [r.original_label for r in rows] == test.y[:12].tolist()
    assert (target != test.y[:12]).all()
    assert [r.shown_pred for r in rows] == probs.argmax(1).tolist()
    assert [r.clean_pred for r in rows] == clean_probs.argmax(1).tolist()
    achieved = probs.gather(1, target[:, None]).squeeze(1)
    assert [r.achieved_confidence for r in rows] == pytest.approx(achieved.tolist(), abs=1e-5)
    assert [r.shown_confidence for r in rows] == pytest.approx(probs.amax(1).tolist(), abs=1e-5)
    assert [r.clean_confidence for r in rows] == pytest.approx(
        clean_probs.amax(1).tolist(), abs=1e-5
    )
    # confidence "original": the requested confidence is the clean one (thesis §4.5)
    assert [r.requested_confidence for r in rows] == [r.clean_confidence for r in rows]
    l2 = (shown - clean).flatten(1).norm(dim=1)
    assert [r.l2_norm for r in rows] == pytest.approx(l2.tolist(), abs=1e-5)
    assert all(r.l2_norm > 0 and r.iterations > 0 for r in rows)
    for r in rows:
        assert r.success == (
            r.shown_pred == r.target and r.achieved_confidence >= r.requested_confidence
        )
    # every image the attack reaches is still reached once rounded to 8 bits
    assert all(r.success for r in rows)

    names = [r.image.name for r in rows] + [r.clean_image.name for r in rows]
    assert all(OPAQUE.match(n) for n in names) and len(set(names)) == 24
    assert media_files(tmp_path) == set(names)
    for r in rows[:3]:
        with r.image.open("rb") as handle:
            data = handle.read()
        assert png_chunks(data) == ["IHDR", "IDAT", "IEND"]
        with Image.open(io.BytesIO(data)) as image:
            assert image.info == {} and image.mode == "L" and image.size == (28, 28)


def test_a_rerun_with_the_same_parameters_changes_nothing(tiny, tmp_path):
    generate("--limit", "6", "--batch-size", "4", "--controls", "noise")
    before = (list(Stimulus.objects.values_list("id", "image")), media_files(tmp_path))
    updated = StimulusSet.objects.get(name="tiny-hc").updated
    generate("--limit", "6", "--batch-size", "4", "--controls", "noise")
    assert (list(Stimulus.objects.values_list("id", "image")), media_files(tmp_path)) == before
    assert StimulusSet.objects.get(name="tiny-hc").updated == updated


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tiny, tmp_path, error):
    def stop_after_first_chunk(name: str, done: int, total: int) -> None:
        if done >= 4:
            raise error("stop here")

    expected = pytest.raises(KeyboardInterrupt if error is KeyboardInterrupt else StimulusError)
    with expected:
        stimulus_set_generate(
            request=StimulusRequest(model=tiny.name, name="cut", limit=10, batch_size=4),
            device="cpu", progress=stop_after_first_chunk,
        )  # fmt: skip
    cut = StimulusSet.objects.get(name="cut")
    assert cut.status == ("interrupted" if error is KeyboardInterrupt else "failed")
    assert "stop here" in cut.error or "resume" in cut.error
    assert (cut.stimuli.count(), cut.progress_done, cut.progress_total) == (4, 4, 10)

    seen: list[tuple[int, int]] = []
    stimulus_set_generate(
        request=StimulusRequest(model=tiny.name, name="cut", limit=10, batch_size=4),
        device="cpu", progress=lambda name, done, total: seen.append((done, total)),
    )  # fmt: skip
    assert seen == [(4, 10), (8, 10), (10, 10)]  # only the missing images were attacked
    generate("--limit", "10", "--batch-size", "4", "--set", "whole")
    cut.refresh_from_db()
    whole = StimulusSet.objects.get(name="whole")
    assert (cut.status, cut.error, cut.progress_done) == ("done", "", 10)
    assert columns(cut) == columns(whole)
    assert np.allclose(floats(cut), floats(whole), atol=1e-6)
    for a, b in zip(cut.stimuli.all(), whole.stimuli.all(), strict=True):
        assert np.array_equal(pixels(a.image), pixels(b.image))
    assert len(media_files(tmp_path)) == 2 * 20  # no files left over from the interruption


def test_other_parameters_under_the_same_name_are_refused_unless_replaced(tiny, tmp_path):
    generate("--limit", "4", "--batch-size", "4", "--controls", "clean")
    old_files = media_files(tmp_path)
    with pytest.raises(CommandError, match=r"confidence \(original → 0\.9\).*--replace"):
        generate("--limit", "4", "--batch-size", "4", "--confidence", "0.9")
    with pytest.raises(CommandError, match=r"limit \(4 → 5\)"):
        generate("--limit", "5", "--batch-size", "4")
    generate("--limit", "5", "--batch-size", "4", "--confidence", "0.9", "--replace")
    s = StimulusSet.objects.get(name="tiny-hc")
    assert s.params["confidence"] == 0.9 and s.stimuli.count() == 5
    assert set(s.stimuli.values_list("requested_confidence", flat=True)) == {0.9}
    assert not StimulusSet.objects.filter(name="tiny-hc-clean").exists()  # controls went too
    assert not old_files & media_files(tmp_path)  # and so did their files

    study = Study.objects.create(name="uses-it", config_hash="0" * 64)
    Condition.objects.create(study=study, set=s, position=0)
    with pytest.raises(CommandError, match="used by study 'uses-it'"):
        generate("--limit", "5", "--batch-size", "4", "--replace")
    assert s.stimuli.count() == 5


def test_controls_share_sources_and_targets_and_match_their_definitions(tiny, net):
    generate("--limit", "8", "--batch-size", "3", "--controls", "clean,noise,flipped")
    parent = StimulusSet.objects.get(name="tiny-hc")
    base = list(parent.stimuli.order_by("source_index"))
    adv = as_float([pixels(r.image) for r in base])
    clean = as_float([pixels(r.clean_image) for r in base])
    for kind in ("clean", "noise", "flipped"):
        s = StimulusSet.objects.get(name=f"tiny-hc-{kind}")
        assert (s.kind, s.parent, s.model, s.status) == (kind, parent, tiny, "done")
        rows = list(s.stimuli.order_by("source_index"))
        assert [(r.source_index, r.original_label, r.target) for r in rows] == [
            (r.source_index, r.original_label, r.target) for r in base
        ]
        shown = as_float([pixels(r.image) for r in rows])
        with torch.no_grad():
            probs = net(shown).softmax(1)
        target = torch.tensor([r.target for r in rows])
        assert [r.shown_pred for r in rows] == probs.argmax(1).tolist()
        achieved = probs.gather(1, target[:, None]).squeeze(1).tolist()
        assert [r.achieved_confidence for r in rows] == pytest.approx(achieved, abs=1e-5)
        assert [r.success for r in rows] == [r.shown_pred == r.target for r in rows]
        l2 = (shown - clean).flatten(1).norm(dim=1)
        assert [r.l2_norm for r in rows] == pytest.approx(l2.tolist(), abs=1e-5)
        if kind == "clean":
            assert torch.equal(shown, clean)
        elif kind == "flipped":
            assert torch.equal(shown, quantise(clean + (adv - clean).flip(-2)))
        else:
            adv_l2 = torch.tensor([r.l2_norm for r in base])
            assert torch.allclose(l2, adv_l2, atol=0.05)  # 8-bit rounding of the noise only
            assert not torch.equal(shown, clean) and not torch.equal(shown, adv)


def test_control_sets_are_idempotent_and_need_a_finished_adversarial_parent(tiny, tmp_path):
    generate("--limit", "3", "--batch-size", "3")
    parent = StimulusSet.objects.get(name="tiny-hc")
    first = control_sets_generate(parent=parent, kinds=["noise"], device="cpu")
    files = media_files(tmp_path)
    again = control_sets_generate(parent=parent, kinds=["noise"], device="cpu")
    assert [s.pk for s in again] == [s.pk for s in first] and media_files(tmp_path) == files
    with pytest.raises(StimulusError, match="not an adversarial one"):
        control_sets_generate(parent=first[0], kinds=["clean"])
    StimulusSet.objects.filter(pk=parent.pk).update(status="interrupted")
    parent.refresh_from_db()
    with pytest.raises(StimulusError, match="finish it first"):
        control_sets_generate(parent=parent, kinds=["clean"])


def test_random_targets_do_not_depend_on_chunking(tiny):
    generate(
        "--limit", "9", "--target", "random", "--batch-size", "2", "--set", "a", "--steps", "5"
    )
    generate(
        "--limit", "9", "--target", "random", "--batch-size", "9", "--set", "b", "--steps", "5"
    )
    generate("--limit", "9", "--target", "random", "--seed", "1", "--set", "c", "--steps", "5")
    targets = {
        n: list(StimulusSet.objects.get(name=n).stimuli.values_list("target", flat=True))
        for n in "abc"
    }
    labels = dataset_load("synthetic").test.y[:9].tolist()
    assert targets["a"] == targets["b"] != targets["c"]
    assert all(t != y for t, y in zip(targets["a"], labels, strict=True))
    assert StimulusSet.objects.get(name="a").params["steps"] == 5


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--model", "nope"], "no model named 'nope'"),
        (["--model", "tiny", "--confidence", "1.5"], "confidence must be in"),
        (["--model", "tiny", "--confidence", "high"], "confidence must be 'original'"),
        (["--model", "tiny", "--controls", "clean,blur"], "unknown control blur"),
        (["--model", "tiny", "--set", "bad name"], "invalid set name"),
        (["--model", "tiny", "--limit", "0"], "must be positive"),
        (["--model", "tiny", "--target", "farthest"], "invalid choice"),
        (["--model", "pending"], "'pending' is pending, not done"),
        (["--model", "bare"], "'bare' has no stored checkpoint"),
    ],
)
def test_bad_flags_are_one_line_errors(tiny, flags, message):
    TrainedModel.objects.create(name="pending", arch="lenet5", defense="none")
    TrainedModel.objects.create(name="bare", arch="lenet5", defense="none", status="done")
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("generate_stimuli", *flags, "--device", "cpu", "--no-progress")
    assert not StimulusSet.objects.exists()


# --------------------------------------------------------------------------------------------
# Attention checks


def test_attention_sets_are_clean_confident_balanced_and_avoid_excluded_sources(tiny, net):
    test = dataset_load("synthetic").test
    exclude = list(range(0, 128, 3))
    s = attention_set_generate(
        model=tiny, name="checks", count=30, exclude_sources=exclude, seed=3,
        min_confidence=0.6, device="cpu",
    )  # fmt: skip
    rows = list(s.stimuli.exclude(pk=s.example_id).order_by("source_index"))
    assert (s.kind, s.status, len(rows), s.parent) == ("attention", "done", 30, None)
    example = s.example  # reserved for the instructions: one more clean, confident digit
    assert example.set_id == s.pk and example.source_index not in exclude
    assert example.shown_pred == example.original_label
    sources = [r.source_index for r in rows]
    assert not set(sources) & set(exclude)
    labels = [r.original_label for r in rows]
    assert labels == test.y[sources].tolist()
    assert np.bincount(labels, minlength=10).tolist() == [3] * 10
    assert all(r.target is None and r.achieved_confidence is None for r in rows)
    shown = as_float([pixels(r.image) for r in rows])
    assert torch.equal(shown, quantise(test.x[sources]))
    with torch.no_grad():
        probs = net(shown).softmax(1)
    assert probs.argmax(1).tolist() == labels == [r.shown_pred for r in rows]
    assert (probs.amax(1) >= 0.6).all()
    assert all(OPAQUE.match(r.image.name) for r in rows)

    same = attention_set_generate(
        model=tiny, name="checks", count=30, exclude_sources=exclude, seed=3,
        min_confidence=0.6, device="cpu",
    )  # fmt: skip
    assert same.pk == s.pk and same.stimuli.count() == 31
    other = attention_set_generate(
        model=tiny, name="checks-2", count=30, exclude_sources=exclude, seed=4,
        min_confidence=0.6, device="cpu",
    )  # fmt: skip
    assert set(other.stimuli.values_list("source_index", flat=True)) != set(sources)
    with pytest.raises(StimulusError, match="other parameters"):
        attention_set_generate(
            model=tiny, name="checks", count=30, exclude_sources=[], seed=3, min_confidence=0.6
        )


def test_attention_sets_fill_from_other_classes_when_one_runs_short(tiny):
    test = dataset_load("synthetic").test
    # leave only two images of class 0 available
    zeros = (test.y == 0).nonzero().squeeze(1).tolist()
    s = attention_set_generate(
        model=tiny, name="short", count=40, exclude_sources=zeros[2:], min_confidence=0.5,
        device="cpu",
    )  # fmt: skip
    pool = s.stimuli.exclude(pk=s.example_id).values_list("original_label", flat=True)
    counts = np.bincount(list(pool), minlength=10)
    assert counts[0] == 2 and counts.sum() == 40 and counts[1:].max() - counts[1:].min() <= 1


def test_attention_sets_say_when_there_are_too_few_candidates(tiny):
    with pytest.raises(StimulusError, match=r"only \d+ test images .* 201 needed"):
        attention_set_generate(
            model=tiny, name="many", count=200, exclude_sources=[], min_confidence=0.5,
            device="cpu",
        )  # fmt: skip
    assert not StimulusSet.objects.filter(name="many").exists()
