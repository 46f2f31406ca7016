"""High-confidence attack (chapter 4, Algorithm 1): test-time attack, targets, training version."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness import attacks, nets
from robustness.attacks.high_confidence import HighConfidence, closest_target, hc_differentiable
from robustness.threat import lp_norm


@pytest.fixture(scope="module")
def trained(trained_lenet5):
    """The shared briefly trained LeNet-5 and 32 synthetic test images."""
    return trained_lenet5(32)


def smooth_mlp(seed: int = 0) -> nn.Module:
    """A small twice-differentiable network for the training version."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 10))


@pytest.mark.parametrize("confidence", ["original", 0.9])
def test_reaches_the_target_with_the_requested_confidence(trained, confidence):
    model, x, y = trained
    res = HighConfidence(confidence=confidence)(model, x, y)
    t, c = res.extras["target"], res.extras["confidence"]
    assert res.success.float().mean() >= 0.99
    logits = model(res.x_adv)
    probs = logits.softmax(1)
    assert torch.equal(res.success, (logits.argmax(1) == t) & (probs[torch.arange(len(x)), t] >= c))
    torch.testing.assert_close(res.extras["achieved"], probs[torch.arange(len(x)), t])
    clean = model(x).softmax(1)
    torch.testing.assert_close(res.extras["clean_confidence"], clean.max(1).values)
    assert torch.equal(res.extras["clean_pred"], clean.argmax(1))
    expected_c = clean.max(1).values if confidence == "original" else torch.full_like(c, 0.9)
    torch.testing.assert_close(c, expected_c)
    assert t.dtype == torch.int64 and (t != y).all()
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.norm == "l2"
    torch.testing.assert_close(res.norms, lp_norm(res.x_adv - x, "l2"))
    assert (res.iterations >= 1).all() and (res.iterations < 500).all()
    # closest target: k = 10 (one forward, a backward per class); then one per check
    assert ((res.grad_evals == res.iterations + 10) | (res.grad_evals == res.iterations + 11)).all()


def test_default_target_is_the_closest_boundary(trained):
    model, x, y = trained
    res = HighConfidence(steps=1)(model, x, y)
    assert torch.equal(res.extras["target"], closest_target(model, x, y))


def test_random_targets_differ_from_the_label_and_follow_the_seed(trained):
    model, x, y = trained
    a = HighConfidence(target="random", steps=1)(model, x, y).extras["target"]
    b = HighConfidence(target="random", steps=1)(model, x, y).extras["target"]
    c = HighConfidence(target="random", steps=1, seed=1)(model, x, y).extras["target"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a != y).all() and a.min() >= 0 and a.max() < 10
    assert len(a.unique()) == 10  # spread over the classes


def test_random_targets_are_reached_deterministically(trained):
    model, x, y = trained
    res = HighConfidence(target="random", clip=None)(model, x, y)
    assert res.success.float().mean() >= 0.99
    # no closest-target pass: one evaluation per check before each update (and the last)
    assert ((res.grad_evals == res.iterations) | (res.grad_evals == res.iterations + 1)).all()
    again = HighConfidence(target="random", clip=None)(model, x, y)
    assert torch.equal(res.x_adv, again.x_adv)


def test_given_targets_override_the_field_and_label_targets_are_untouched(trained):
    model, x, y = trained
    target = (y + 3) % 10
    target[:5] = y[:5]
    res = HighConfidence(target="random", confidence=0.9, clip=None)(model, x, y, target=target)
    assert torch.equal(res.extras["target"], target)
    assert torch.equal(res.x_adv[:5], x[:5])
    assert not res.iterations[:5].any() and not res.grad_evals[:5].any()
    assert not res.norms[:5].any()
    assert res.success[5:].float().mean() >= 0.99
    assert torch.equal(model(res.x_adv[5:]).argmax(1)[res.success[5:]], target[5:][res.success[5:]])


def test_examples_already_at_the_target_cost_nothing(trained):
    model, x, y = trained
    pred = model(x).argmax(1)
    wrong_label = (pred + 1) % 10
    res = HighConfidence()(model, x, wrong_label, target=pred)  # C = clean confidence = p_pred
    assert res.success.all()
    assert torch.equal(res.x_adv, x)
    assert not res.grad_evals.any() and not res.iterations.any()


def test_closest_target_equals_brute_force_on_an_affine_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double()
    x = torch.rand(16, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    w, b = model[1].weight.detach(), model[1].bias.detach()
    expected = []
    for i in range(16):
        z = w @ x[i].flatten() + b
        dist = {
            j: abs((z[j] - z[y[i]]).item()) / (w[j] - w[y[i]]).norm().item()
            for j in range(10)
            if j != y[i]
        }
        expected.append(min(dist, key=dist.get))
    got = closest_target(model, x, y)
    assert got.dtype == torch.int64 and not got.requires_grad
    assert got.tolist() == expected
    assert all(p.grad is None for p in model.parameters())


def test_each_step_is_clipped(trained):
    model, x, y = trained
    res = HighConfidence(steps=1, clip=0.05)(model, x, y)
    assert (res.norms <= 0.05 * 1.02 + 1e-6).all()
    assert (res.norms > 0.04).all()  # the unclipped steps are longer here
    assert torch.equal(res.iterations, torch.ones_like(res.iterations))


def test_parameters_and_modes_are_untouched(trained):
    model = nets.build("lenet5", dropout=0.5)
    model.load_state_dict(trained[0].state_dict())
    _, x, y = trained
    model.train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = HighConfidence(steps=5)(model, x, y)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert not model[0].weight.requires_grad
    assert all(p.requires_grad for p in list(model.parameters())[1:])
    torch.testing.assert_close(res.x_adv, HighConfidence(steps=5)(trained[0], x, y).x_adv)


def test_small_chunks_give_the_same_result(trained):
    model, x, y = trained
    whole = HighConfidence(target="random", confidence=0.9, seed=None, clip=None)
    torch.manual_seed(5)
    a = whole(model, x, y)
    torch.manual_seed(5)
    b = HighConfidence(target="random", confidence=0.9, seed=None, clip=None)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv)  # seed=None draws from the global generator
    given = a.extras["target"]
    c = HighConfidence(confidence=0.9, clip=None, chunk_size=7)(model, x, y, target=given)
    torch.testing.assert_close(c.x_adv, a.x_adv)
    assert torch.equal(c.iterations, a.iterations) and torch.equal(c.success, a.success)


def test_training_version_keeps_the_graph_to_the_parameters():
    model = smooth_mlp()
    x = torch.rand(8, 1, 28, 28)
    target = (model(x).argmax(1) + 1) % 10
    x_hat = hc_differentiable(model, x, target, torch.full((8,), 0.9))
    assert x_hat.requires_grad and x_hat.shape == x.shape
    assert not torch.equal(x_hat, x)
    (x_hat - x).pow(2).sum().backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_training_version_matches_one_hand_computed_step():
    model = smooth_mlp()
    x = torch.rand(4, 1, 28, 28)
    target = torch.tensor([1, 2, 3, 4])
    x_hat = hc_differentiable(model, x, target, torch.full((4,), 0.95), steps=1, overshoot=0.05)
    xr = x.clone().requires_grad_(True)
    ell = F.log_softmax(model(xr), 1)[torch.arange(4), target]
    (g,) = torch.autograd.grad(ell.sum(), xr)
    g_norm = g.flatten(1).norm(dim=1)
    length = (ell.detach() - torch.tensor(0.95).log()).abs() / g_norm + 1e-4
    expected = x + 1.05 * g * (length / g_norm).view(-1, 1, 1, 1)
    torch.testing.assert_close(x_hat.detach(), expected)


def test_stop_mask_freezes_examples_already_at_confidence():
    model = smooth_mlp()
    x = torch.rand(6, 1, 28, 28)
    target = (model(x).argmax(1) + 1) % 10
    confidence = torch.tensor([1e-6, 1e-6, 1e-6, 0.9, 0.9, 0.9])
    x_hat = hc_differentiable(model, x, target, confidence)
    assert torch.equal(x_hat[:3], x[:3])  # p_t ≥ C at once: the mask stops every update
    assert ((x_hat[3:] - x[3:]).flatten(1).norm(dim=1) > 0).all()
    # The straight-through mask still passes gradients through the stopped examples.
    x_hat.sum().backward()
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_gradient_flows_into_the_confidence():
    model = smooth_mlp()
    x = torch.rand(5, 1, 28, 28)
    target = (model(x).argmax(1) + 1) % 10
    confidence = torch.full((5,), 0.8, requires_grad=True)
    x_hat = hc_differentiable(model, x, target, confidence, steps=3)
    (x_hat - x).pow(2).sum().backward()
    assert confidence.grad is not None and torch.isfinite(confidence.grad).all()
    assert (confidence.grad != 0).all()


def test_registry_and_validation():
    attack = attacks.build("hc", confidence="0.9", clip="none", target="random")
    assert isinstance(attack, HighConfidence)
    assert (attack.confidence, attack.clip, attack.target) == (0.9, None, "random")
    assert attacks.build("hc", confidence="original").confidence == "original"
    default = HighConfidence()
    assert (default.steps, default.clip, default.overshoot) == (500, 0.1, 0.02)
    assert default.describe()["norm"] == "l2"
    for bad, match in [
        ({"target": "far"}, "target"),
        ({"confidence": "high"}, "confidence"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"steps": 0}, "steps"),
        ({"clip": -1.0}, "clip"),
        ({"overshoot": -0.5}, "overshoot"),
    ]:
        with pytest.raises(ValueError, match=match):
            HighConfidence(**bad)
    model = smooth_mlp()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="target"):
        HighConfidence()(model, x, y, target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets must lie"):
        HighConfidence()(model, x, y, target=torch.tensor([0, 1, 10]))
