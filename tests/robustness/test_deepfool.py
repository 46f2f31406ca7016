"""DeepFool (eq. 2.18): exact on affine classifiers, box kept, early stop, invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness import attacks, nets
from robustness.attacks.deepfool import DeepFool
from robustness.threat import lp_norm


def affine(num_classes: int, seed: int = 0) -> nn.Sequential:
    """A float64 affine classifier 784 → k."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes)).double().eval()


def inside(n: int, seed: int = 1) -> torch.Tensor:
    """Inputs well inside the box, so it never binds for an affine model's small steps."""
    gen = torch.Generator().manual_seed(seed)
    return (0.4 + 0.2 * torch.rand(n, 1, 28, 28, generator=gen)).double()


def analytic(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, dual: float):
    """Distance to the nearest hyperplane z_j = z_y and the index j, from W and b directly."""
    lin = model[1]
    w, b = lin.weight.detach(), lin.bias.detach()
    z = x.flatten(1) @ w.T + b
    best, best_j = [], []
    for i in range(len(x)):
        dists = {
            j: (z[i, j] - z[i, y[i]]).abs().item() / (w[j] - w[y[i]]).norm(p=dual).item()
            for j in range(w.shape[0])
            if j != y[i]
        }
        j = min(dists, key=dists.get)
        best.append(dists[j])
        best_j.append(j)
    return torch.tensor(best, dtype=x.dtype), torch.tensor(best_j)


@pytest.fixture(scope="module")
def trained(trained_lenet5):
    """The shared briefly trained LeNet-5 and 48 synthetic test images."""
    return trained_lenet5(48)


@pytest.mark.parametrize("num_classes", [2, 10])
def test_l2_step_is_the_exact_distance_to_the_hyperplane_in_one_iteration(num_classes):
    model = affine(num_classes)
    x = inside(12)
    y = model(x).argmax(1)
    dist, j = analytic(model, x, y, dual=2)
    res = DeepFool(overshoot=0.0)(model, x, y)
    assert res.success.all()
    assert torch.equal(res.iterations, torch.ones(12, dtype=torch.long))
    assert torch.equal(res.grad_evals, torch.ones(12, dtype=torch.long))
    torch.testing.assert_close(res.norms, dist + 1e-4, rtol=1e-6, atol=0)
    w = model[1].weight.detach()
    direction = w[j] - w[y]
    direction = direction / direction.norm(dim=1, keepdim=True)
    expected = x + ((dist + 1e-4)[:, None] * direction).view_as(x)
    torch.testing.assert_close(res.x_adv, expected, rtol=0, atol=1e-12)
    assert res.x_adv.min() > 0.05 and res.x_adv.max() < 0.95  # the box never bound


def test_linf_step_is_the_l1_dual_distance_with_a_sign_step():
    model = affine(10)
    x = inside(12)
    y = model(x).argmax(1)
    dist, j = analytic(model, x, y, dual=1)
    res = DeepFool(norm="linf", overshoot=0.0)(model, x, y)
    assert res.norm == "linf" and res.success.all()
    assert torch.equal(res.iterations, torch.ones(12, dtype=torch.long))
    torch.testing.assert_close(res.norms, dist + 1e-4, rtol=1e-6, atol=0)
    w = model[1].weight.detach()
    expected = x + ((dist + 1e-4)[:, None] * (w[j] - w[y]).sign()).view_as(x)
    torch.testing.assert_close(res.x_adv, expected, rtol=0, atol=1e-12)


def test_overshoot_scales_the_returned_perturbation():
    model = affine(10)
    x = inside(8)
    y = model(x).argmax(1)
    dist, _ = analytic(model, x, y, dual=2)
    res = DeepFool(overshoot=0.02)(model, x, y)
    torch.testing.assert_close(res.norms, 1.02 * (dist + 1e-4), rtol=1e-6, atol=0)


def test_candidates_restrict_the_boundaries_considered():
    model = affine(10)
    x = inside(8)
    y = model(x).argmax(1)
    # With two candidates only the runner-up at the clean input can be the target class.
    runner_up = model(x).topk(2, dim=1).indices[:, 1]
    lin = model[1]
    w, b = lin.weight.detach(), lin.bias.detach()
    z = x.flatten(1) @ w.T + b
    rows = torch.arange(8)
    dist = (z[rows, runner_up] - z[rows, y]).abs() / (w[runner_up] - w[y]).norm(dim=1)
    res = DeepFool(overshoot=0.0, candidates=2, steps=1)(model, x, y)
    expected = x + ((dist + 1e-4)[:, None] * F.normalize(w[runner_up] - w[y], dim=1)).view_as(x)
    torch.testing.assert_close(res.x_adv, expected, rtol=0, atol=1e-12)
    # Candidates covering every class give the full attack.
    full = DeepFool(overshoot=0.0)(model, x, y)
    torch.testing.assert_close(
        DeepFool(overshoot=0.0, candidates=10)(model, x, y).x_adv, full.x_adv
    )


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("box", ["project", "clamp"])
def test_trained_lenet5_is_fooled_inside_the_box(trained, norm, box):
    model, x, y = trained
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    res = DeepFool(norm=norm, box=box)(model, x, y)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.device == x.device
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.success.float().mean() >= 0.97
    torch.testing.assert_close(res.norms, lp_norm(res.x_adv - x, norm))
    assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)
    assert torch.equal(res.grad_evals, res.iterations)
    assert res.extras == {}


def test_candidates_still_fool_the_trained_network(trained):
    model, x, y = trained
    res = DeepFool(candidates=3)(model, x, y)
    assert res.success.float().mean() >= 0.97


def test_already_misclassified_examples_cost_nothing(trained):
    model, x, y = trained
    wrong = (model(x).argmax(1) + 1) % 10
    res = DeepFool()(model, x, wrong)
    assert res.success.all()
    assert torch.equal(res.x_adv, x)
    assert not res.norms.any() and not res.iterations.any() and not res.grad_evals.any()


def test_finished_examples_stop_costing_gradient_evaluations(trained):
    model, x, y = trained
    res = DeepFool(steps=50)(model, x, y)
    assert res.iterations.max() < 50  # every example stopped early ...
    assert res.iterations.min() >= 1
    assert (res.iterations != res.iterations.max()).any()  # ... and not all at the same step


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_clip_limits_each_step(trained, norm):
    model, x, y = trained
    res = DeepFool(norm=norm, steps=1, clip=0.05)(model, x, y)
    assert (res.norms <= 0.05 * 1.02 + 1e-6).all()
    assert (res.norms > 0.04).all()  # DeepFool's first steps are longer than 0.05 here
    unclipped = DeepFool(norm=norm, steps=1)(model, x, y)
    assert (unclipped.norms > 0.06).all()


def test_parameters_and_modes_are_untouched(trained):
    model, x, y = trained
    model = nets.build("lenet5", dropout=0.5)
    model.load_state_dict(trained[0].state_dict())
    model.train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = DeepFool()(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert not model[0].weight.requires_grad and model[1].training
    assert all(p.requires_grad for p in list(model.parameters())[1:])
    # The attack ran in eval mode: dropout off, so it matches the eval-mode result.
    torch.testing.assert_close(res.x_adv, DeepFool()(trained[0], x, y).x_adv)


def test_small_chunks_give_the_same_result(trained):
    model, x, y = trained
    whole = DeepFool()(model, x, y)
    chunked = DeepFool(chunk_size=7)(model, x, y)
    torch.testing.assert_close(chunked.x_adv, whole.x_adv)
    assert torch.equal(chunked.success, whole.success)
    assert torch.equal(chunked.iterations, whole.iterations)
    assert torch.equal(chunked.grad_evals, whole.grad_evals)


def test_deterministic(trained):
    model, x, y = trained
    a, b = DeepFool(norm="linf")(model, x, y), DeepFool(norm="linf")(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv)


def test_registry_and_validation():
    attack = attacks.build("deepfool", norm="linf", steps="500", clip="0.1", candidates="none")
    assert isinstance(attack, DeepFool)
    assert (attack.steps, attack.clip, attack.candidates) == (500, 0.1, None)
    assert attack.describe()["norm"] == "linf"
    assert DeepFool().overshoot == 0.02 and DeepFool().steps == 50 and DeepFool().norm == "l2"
    for bad, match in [
        ({"norm": "l1"}, "norm"),
        ({"steps": 0}, "steps"),
        ({"overshoot": -0.1}, "overshoot"),
        ({"clip": 0.0}, "clip"),
        ({"box": "wrap"}, "box"),
        ({"candidates": 1}, "candidates"),
        ({"chunk_size": 0}, "chunk_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            DeepFool(**bad)
