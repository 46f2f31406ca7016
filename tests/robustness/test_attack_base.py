"""Shared attack machinery: norms, projections, class gradients, the registry."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch
from torch import nn

from robustness import attacks, threat
from robustness.attacks.base import (
    Attack,
    AttackResult,
    Chunk,
    box_project,
    check_inputs,
    class_gradients,
)


def test_lp_norms_per_example():
    r = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 0.0]]).view(2, 1, 1, 3)
    assert threat.lp_norm(r, "l2").tolist() == [5.0, 0.0]
    assert threat.lp_norm(r, "l1").tolist() == [7.0, 0.0]
    assert threat.lp_norm(r, "linf").tolist() == [4.0, 0.0]
    assert threat.lp_norm(r, "l0").tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="unknown norm"):
        threat.lp_norm(r, "l3")


def test_pixel_l0_counts_pixels_not_channels():
    r = torch.zeros(1, 3, 2, 2)
    r[0, :, 0, 0] = 0.1  # one pixel, three channels
    r[0, 1, 1, 1] = -0.2  # another pixel, one channel
    assert threat.pixel_l0(r).tolist() == [2.0]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_random_start_and_steepest_step_respect_the_ball(norm):
    obj = threat.get(norm)
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(6, 1, 4, 4, generator=gen)
    eps = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 100.0])
    p = obj.project(r, eps)
    assert (threat.lp_norm(p, norm) <= eps + 1e-6).all()
    assert torch.allclose(p[-1], r[-1])  # inside the ball: unchanged
    start = obj.random(r, 0.3, generator=gen)
    assert (threat.lp_norm(start, norm) <= 0.3 + 1e-6).all()
    step = obj.steepest(r)
    assert torch.allclose(threat.lp_norm(step, norm), torch.ones(6))
    # steepest ascent: <g, step> is the dual norm of g
    dual = "l1" if norm == "linf" else "l2"
    inner = (r * step).flatten(1).sum(1)
    assert torch.allclose(inner, threat.lp_norm(r, dual), rtol=1e-5)


def test_unsupported_projection_norm():
    with pytest.raises(ValueError, match="projected attacks support"):
        threat.get("l0")


def test_class_gradients_match_one_backward_per_class():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)
    )
    x = torch.rand(3, 1, 8, 8)
    logits, grads = class_gradients(model, x)
    assert grads.shape == (5, 3, 1, 8, 8)
    for j in range(5):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xr)[:, j].sum(), xr)
        assert torch.allclose(grads[j], g, atol=1e-6)
    assert torch.allclose(logits, model(x))
    assert all(p.grad is None for p in model.parameters())


def test_box_projection_keeps_the_overshoot_point_inside():
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)
    r = torch.tensor([-1.0, 0.2, 0.5]).view(1, 1, 1, 3)
    p = box_project(x, r, 0.02)
    point = x + 1.02 * p
    assert point.min() >= 0 and point.max() <= 1 + 1e-7
    assert torch.allclose(p[0, 0, 0, 1], torch.tensor(0.2))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.rand(2, 1, 4, 4) + 1.5, torch.zeros(2, dtype=torch.long), r"\[0, 1\]"),
        (torch.rand(2, 16), torch.zeros(2, dtype=torch.long), "N×C×H×W"),
        (torch.rand(2, 1, 4, 4), torch.zeros(3, dtype=torch.long), "labels"),
        (torch.rand(2, 1, 4, 4), torch.zeros(2), "labels"),
    ],
)
def test_bad_inputs_are_rejected(x, y, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(x, y)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shift(Attack):
    """A fake attack adding a constant: checks chunking and mode handling of the base."""

    name: ClassVar[str] = "shift"
    norm: ClassVar[str] = "linf"
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    delta: float = 0.1

    def perturb(self, model, x, y, chunk: Chunk, target=None):
        assert not model.training
        assert len(x) <= self.chunk_size
        chunk.count()
        if target is not None:
            chunk.extras["target"] = target
        return x + self.delta


def test_base_call_chunks_restores_mode_and_clamps():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(), nn.Linear(4, 2)).train()
    x = torch.full((5, 1, 2, 2), 0.95)
    out = Shift(chunk_size=2)(model, x, torch.zeros(5, dtype=torch.long), target=torch.arange(5))
    assert model.training and all(m.training for m in model.modules())
    assert isinstance(out, AttackResult) and len(out) == 5
    assert out.x_adv.max() == 1.0
    assert torch.allclose(out.norms, torch.full((5,), 0.05))
    assert out.extras["target"].tolist() == [0, 1, 2, 3, 4]
    assert Shift(chunk_size=2).describe()["chunk_size"] == 2
    with pytest.raises(ValueError, match="chunk_size"):
        Shift(chunk_size=0)


def test_registry_builds_with_coerced_parameters_and_explains_mistakes():
    assert set(attacks.names()) == {"fgsm", "pgd", "deepfool", "cw", "hc", "pdgd", "pdpgd"}
    with pytest.raises(ValueError, match="unknown attack 'magic'"):
        attacks.build("magic")
    deepfool = attacks.build("deepfool", steps="7", overshoot="0.05", clip="none")
    assert (deepfool.steps, deepfool.overshoot, deepfool.clip) == (7, 0.05, None)
    with pytest.raises(ValueError, match="has no parameter 'eps'"):
        attacks.build("deepfool", eps="0.1")


def test_class_gradients_for_selected_classes():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6))
    x = torch.rand(4, 1, 4, 4)
    classes = torch.tensor([[0, 5], [1, 2], [3, 3], [4, 0]])
    logits, grads = class_gradients(model, x, classes)
    all_logits, all_grads = class_gradients(model, x)
    assert torch.equal(logits, all_logits.gather(1, classes))
    rows = torch.arange(4)
    for m in range(2):
        assert torch.allclose(grads[m], all_grads[classes[:, m], rows])


def test_class_gradients_loop_and_vmap_paths_agree(monkeypatch):
    from robustness.attacks import base

    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 4)
    )
    x = torch.rand(5, 1, 8, 8)
    classes = torch.tensor([[0, 3]] * 5)
    monkeypatch.setattr(base, "LOOP_BATCH", 1)
    looped = class_gradients(model, x), class_gradients(model, x, classes)
    monkeypatch.setattr(base, "LOOP_BATCH", 10**9)
    mapped = class_gradients(model, x), class_gradients(model, x, classes)
    for (la, ga), (lb, gb) in zip(looped, mapped, strict=True):
        assert torch.equal(la, lb) and torch.allclose(ga, gb, atol=1e-6)


@pytest.mark.parametrize("name", threat.NORMS)
def test_every_norm_object_measures_projects_and_proxes_per_example(name):
    ball = threat.norm(name)
    r = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ball.distance(r), threat.lp_norm(r, name))
    eps = torch.tensor([1.0, 2.0, 3.0, 5.0, 8.0, 1000.0])  # radii; whole counts for l0
    p = ball.project(r, eps)
    assert (ball.distance(p) <= eps + 1e-5).all()
    outside = ball.distance(r) > eps
    assert outside[:2].all() and not outside[-1]
    assert (ball.distance(p[outside]) >= eps[outside] - 1e-4).all()  # onto the sphere
    assert torch.equal(p[~outside], r[~outside])  # inside the ball: unchanged
    assert torch.allclose(ball.prox(r, 1e-9), r, atol=1e-4)
    assert ball.prox(r, 1e6).eq(0).all()


def test_l0_projections_keep_the_largest_entries_or_pixels():
    r = torch.tensor([0.5, -3.0, 0.0, 2.0, -1.0, 0.1]).view(1, 1, 2, 3)
    kept = threat.norm("l0").project(r, 2.0)
    assert kept.flatten().tolist() == [0.0, -3.0, 0.0, 2.0, 0.0, 0.0]
    colour = torch.zeros(1, 3, 1, 3)
    colour[0, :, 0, 0] = torch.tensor([0.1, 0.9, 0.0])  # pixel 0: largest channel 0.9
    colour[0, 2, 0, 1] = 0.5  # pixel 1: 0.5
    colour[0, 0, 0, 2] = -0.7  # pixel 2: 0.7
    kept = threat.norm("l0_pixel").project(colour, 2)
    assert torch.equal(kept[0, :, 0, 0], colour[0, :, 0, 0]) and not kept[0, :, 0, 1].any()
    assert torch.equal(kept[0, :, 0, 2], colour[0, :, 0, 2])


@pytest.mark.parametrize("name", ["linf", "l2", "l1"])
def test_steepest_direction_and_random_start(name):
    ball = threat.norm(name)
    gen = torch.Generator().manual_seed(4)
    g = torch.randn(6, 1, 4, 4, generator=gen)
    step = ball.steepest(g)
    assert torch.allclose(ball.distance(step), torch.ones(6))
    # steepest ascent: ⟨g, step⟩ is the dual norm of g
    assert torch.allclose((g * step).flatten(1).sum(1), ball.dual(g.flatten(1)), rtol=1e-5)
    start = ball.random(torch.zeros(4000, 1, 2, 2), 0.3, generator=gen)
    size = ball.distance(start)
    assert (size <= 0.3 + 1e-6).all()
    # uniform in a d-ball (d = 4): P(‖r‖ ≤ ρ) = (ρ/ε)^d, so (‖r‖/ε)^d is uniform on [0, 1]
    assert abs((size / 0.3).pow(4).mean().item() - 0.5) < 0.03


@pytest.mark.parametrize("name", ["l0", "l0_pixel"])
def test_counting_norms_have_no_steepest_direction_or_random_start(name):
    ball = threat.norm(name)
    with pytest.raises(ValueError, match="has no steepest"):
        ball.steepest(torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="has no random start"):
        ball.random(torch.ones(1, 1, 2, 2), 1.0)
    with pytest.raises(ValueError, match="has no dual"):
        ball.dual(torch.ones(1, 4))
