"""FGSM and PGD: ε-ball and box, strength ordering, early stop, restarts, seeds, analytic cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness import attacks
from robustness.attacks.fgsm import FGSM
from robustness.attacks.pgd import PGD
from robustness.threat import lp_norm

TOL = 1e-6

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(trained_mlp):
    """The shared small MLP and 48 synthetic test images."""
    return trained_mlp(48)


def _check_result(model, x, y, result, norm: str, eps: float) -> None:
    """Shape/dtype/device, box, ε-ball, norms and success as the result claims them."""
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.x_adv.device == x.device
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    norms = lp_norm(result.x_adv - x, norm)
    assert torch.allclose(result.norms, norms)
    assert (norms <= eps + TOL).all()
    assert result.norm == norm
    assert result.iterations.dtype == result.grad_evals.dtype == torch.int64
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)


def _affine_binary(gen: torch.Generator, scale: float) -> tuple[nn.Module, torch.Tensor]:
    """Two logits, z1 − z0 = w·(x − ½) with w = ±scale: every distance is known in closed form.

    A small ``scale`` keeps the logits moderate: at |z1 − z0| ≳ 17 the float32 softmax of the
    label rounds to 1 and the cross-entropy gradient vanishes.
    """
    w = (torch.randint(0, 2, (784,), generator=gen).float() * 2 - 1) * scale
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = w
        model[1].bias.zero_()
        model[1].bias[1] = -0.5 * w.sum()
    return model.eval(), w


def _points_at(w: torch.Tensor, signed: torch.Tensor, norm: str, gen: torch.Generator):
    """Images near ½ at the given signed lp distances from the hyperplane w·(x − ½) = 0."""
    u = w / w.norm()
    dual = w.norm(p=1) if norm == "linf" else w.norm()
    noise = (torch.rand(len(signed), 784, generator=gen) - 0.5) * 0.2
    noise -= (noise @ u)[:, None] * u  # orthogonal to w: it does not move the margin
    x = 0.5 + noise + (signed * dual / w.norm())[:, None] * u
    assert x.min() >= 0.2 and x.max() <= 0.8  # far from the box for every ε used below
    return x.view(-1, 1, 28, 28), (signed > 0).long()


def _snapshot(model: nn.Module) -> dict:
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
    }


def _assert_same(before: dict, after: dict) -> None:
    assert all(torch.equal(a, b) for a, b in zip(before["params"], after["params"], strict=True))
    assert before["requires_grad"] == after["requires_grad"]
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert before["training"] == after["training"]


# --------------------------------------------------------------------------------------------
# FGSM


def test_fgsm_step_is_eps_times_the_gradient_sign_where_the_box_does_not_bind(trained):
    model, x, y = trained
    x = 0.3 + 0.4 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    eps = 0.2
    result = FGSM(eps=eps)(model, x, y)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    assert torch.allclose(result.x_adv - x, eps * grad.sign(), atol=TOL)
    assert torch.allclose(result.norms, torch.full_like(result.norms, eps), atol=TOL)
    _check_result(model, x, y, result, "linf", eps)
    assert (result.iterations == 1).all() and (result.grad_evals == 1).all()


def test_fgsm_stays_in_the_box_and_every_example_is_attacked(trained):
    model, x, y = trained
    y = y.clone()
    y[:8] = (y[:8] + 1) % 10  # misclassified from the start: FGSM still takes its one step
    result = FGSM(eps=0.2)(model, x, y)
    _check_result(model, x, y, result, "linf", 0.2)
    assert result.norms.min() > 0
    assert (result.grad_evals == 1).all()
    assert ((x + 0.2 > 1) | (x - 0.2 < 0)).any()  # the box did bind somewhere
    assert (result.norms < 0.2 - TOL).sum() == 0  # and yet some pixel moved by ε in each image


def test_fgsm_at_eps_zero_returns_the_input(trained):
    model, x, y = trained
    result = FGSM(eps=0.0)(model, x, y)
    assert torch.equal(result.x_adv, x) and not result.success.any()


# --------------------------------------------------------------------------------------------
# PGD


@pytest.mark.parametrize(
    ("norm", "eps", "step", "loss"),
    [("linf", 0.1, 0.01, "ce"), ("l2", 1.5, 0.1, "ce"), ("linf", 0.1, 0.01, "margin")],
)
def test_pgd_stays_in_the_eps_ball_and_the_box(trained, norm, eps, step, loss):
    model, x, y = trained
    attack = PGD(norm=norm, eps=eps, step=step, steps=20, early_stop=False, loss=loss)
    result = attack(model, x, y)
    _check_result(model, x, y, result, norm, eps)
    assert (result.grad_evals == 20).all() and (result.iterations == 20).all()
    # The ball binds: PGD walks to its surface (l∞: some pixel at ±ε) for most images.
    assert (result.norms > eps - 1e-3).float().mean() > 0.5


def test_pgd_is_at_least_as_strong_as_fgsm_at_the_same_eps(trained):
    model, x, y = trained
    eps = 0.15
    fgsm = FGSM(eps=eps)(model, x, y)
    pgd = PGD(eps=eps, step=0.01, steps=40)(model, x, y)
    assert 0 < fgsm.success_rate() < 1  # the comparison is not trivial at this ε
    assert pgd.success_rate() >= fgsm.success_rate()
    assert pgd.success_rate() > fgsm.success_rate()
    _check_result(model, x, y, pgd, "linf", eps)


def test_pgd_early_stop_spends_nothing_on_misclassified_and_stops_fooled_examples(trained):
    model, x, y = trained
    y = y.clone()
    y[:8] = (y[:8] + 1) % 10
    result = PGD(eps=0.2, steps=40, restarts=2)(model, x, y)
    _check_result(model, x, y, result, "linf", 0.2)
    assert torch.equal(result.x_adv[:8], x[:8])
    assert (result.norms[:8] == 0).all() and result.success[:8].all()
    assert (result.grad_evals[:8] == 0).all() and (result.iterations[:8] == 0).all()
    # A fooled example leaves the batch: fewer than the 40 passes of a restart, mostly in the
    # first restart (a second restart only for examples the first one did not fool).
    assert result.success[8:].all()
    evals = result.grad_evals[8:]
    assert ((evals < 40) | ((evals > 40) & (evals < 80))).all()
    assert (evals < 40).float().mean() > 0.9
    assert torch.equal(result.iterations, result.grad_evals)

    full = PGD(eps=0.2, steps=40, restarts=2, early_stop=False)(model, x, y)
    assert (full.grad_evals[:8] == 0).all()
    # Without early stop each restart costs 40 passes; the fooled skip the second one.
    assert ((full.grad_evals[8:] == 40) | (full.grad_evals[8:] == 80)).all()
    assert (full.grad_evals[8:] == 40).float().mean() > 0.9
    assert full.grad_evals.sum() > result.grad_evals.sum()


def test_pgd_restarts_only_add_successes(trained):
    model, x, y = trained
    kw = {"norm": "l2", "eps": 3.5, "step": 0.875, "steps": 10}
    one = PGD(**kw, restarts=1)(model, x, y)
    four = PGD(**kw, restarts=4)(model, x, y)
    assert 0 < one.success_rate() < 1
    assert (four.success | ~one.success).all()
    assert four.success.sum() > one.success.sum()
    # The first restart is the same run: its successes are kept as they were.
    assert torch.equal(four.x_adv[one.success], one.x_adv[one.success])
    assert torch.equal(four.grad_evals[one.success], one.grad_evals[one.success])
    assert (four.grad_evals[~one.success] > 10).all()
    # Without a random start a rerun would repeat itself: there is only one run.
    still = PGD(**kw, restarts=4, random_start=False)(model, x, y)
    assert torch.equal(still.x_adv, PGD(**kw, random_start=False)(model, x, y).x_adv)
    assert (still.grad_evals <= 10).all()
    _check_result(model, x, y, four, "l2", 3.5)


def test_pgd_is_deterministic_under_a_seed_and_seeds_change_the_start(trained):
    model, x, y = trained
    kw = {"eps": 0.1, "steps": 3, "early_stop": False}
    a = PGD(**kw, seed=3)(model, x, y)
    b = PGD(**kw, seed=3)(model, x, y)
    c = PGD(**kw, seed=4)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert not torch.equal(a.x_adv, c.x_adv)
    plain = PGD(**kw, random_start=False)(model, x, y)
    assert torch.equal(plain.x_adv, PGD(**kw, random_start=False, seed=9)(model, x, y).x_adv)


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize(("norm", "eps", "step"), [("l2", 1.0, 0.1), ("linf", 0.1, 0.01)])
def test_pgd_on_an_affine_classifier_succeeds_exactly_within_the_analytic_distance(
    norm, eps, step, loss
):
    gen = torch.Generator().manual_seed(0)
    # Largest |z1 − z0| = 2ε·‖w‖_dual ≈ 6 over the points below.
    model, w = _affine_binary(gen, scale=3 / (eps * (784 if norm == "linf" else 28)))
    ratios = torch.cat([torch.linspace(0.05, 0.9, 10), torch.linspace(1.05, 2.0, 10)])
    signs = torch.tensor([1.0, -1.0]).repeat(10)
    x, y = _points_at(w, ratios * eps * signs, norm, gen)
    f = x.flatten(1) @ w - 0.5 * w.sum()
    distance = f.abs() / (w.norm(p=1) if norm == "linf" else w.norm())
    assert torch.allclose(distance, ratios * eps, rtol=1e-4)
    assert torch.equal(model(x).argmax(1), y)

    result = PGD(norm=norm, eps=eps, step=step, steps=60, loss=loss)(model, x, y)
    _check_result(model, x, y, result, norm, eps)
    inside = distance < eps
    assert torch.equal(result.success, inside)
    margin = (result.x_adv.flatten(1) @ w - 0.5 * w.sum()) * (2 * y - 1)
    assert (margin[inside] <= 0).all() and (margin[~inside] > 0).all()
    # Early stop: the closer an example, the fewer gradient passes it needs.
    assert (result.grad_evals[inside] < 60).all() and (result.grad_evals[~inside] == 60).all()


# --------------------------------------------------------------------------------------------
# Both


@pytest.mark.parametrize(
    "attack", [FGSM(eps=0.2), PGD(eps=0.2, steps=5), PGD(norm="l2", eps=1.0, steps=5)]
)
def test_attacks_leave_parameters_and_modes_untouched(make_mlp, attack):
    torch.manual_seed(0)
    model = make_mlp(hidden=16, dropout=0.5).train()
    model[1].weight.requires_grad_(False)
    model[4].weight.grad = torch.ones_like(model[4].weight)
    x = torch.rand(6, 1, 28, 28)
    y = torch.arange(6)
    before = _snapshot(model)
    first = attack(model, x, y)
    _assert_same(before, _snapshot(model))
    # Eval mode during the attack: dropout is off, so the result does not vary.
    assert torch.equal(first.x_adv, attack(model, x, y).x_adv)


def test_results_are_chunked_transparently(trained):
    model, x, y = trained
    whole = PGD(eps=0.15, steps=10)(model, x, y)
    chunked = PGD(eps=0.15, steps=10, chunk_size=48)(model, x, y)
    assert torch.equal(whole.x_adv, chunked.x_adv)
    fgsm = FGSM(eps=0.15, chunk_size=7)(model, x, y)
    assert torch.equal(fgsm.x_adv, FGSM(eps=0.15)(model, x, y).x_adv)


def test_registry_builds_and_validates():
    pgd = attacks.build("pgd", norm="l2", eps="0.5", steps="10", early_stop="false")
    assert isinstance(pgd, PGD) and pgd.eps == 0.5 and pgd.early_stop is False
    assert pgd.describe()["norm"] == "l2"
    fgsm = attacks.build("fgsm")
    assert fgsm.eps == 0.2 and fgsm.describe()["norm"] == "linf"
    default = PGD()
    assert (default.norm, default.eps, default.step, default.steps) == ("linf", 0.3, 0.01, 40)
    for bad, match in [
        ({"norm": "l1"}, "projected attacks support"),
        ({"eps": -0.1}, "eps must be"),
        ({"step": 0.0}, "step must be"),
        ({"steps": 0}, "steps must be"),
        ({"restarts": 0}, "restarts must be"),
        ({"loss": "hinge"}, "loss must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            PGD(**bad)
    with pytest.raises(ValueError, match="eps must be"):
        FGSM(eps=float("nan"))


@pytest.mark.gpu
def test_attacks_run_on_the_inputs_device(make_mlp, trained):
    model, x, y = trained
    device = torch.device("cuda")
    model_gpu = make_mlp().to(device).eval()
    model_gpu.load_state_dict(model.state_dict())
    xg, yg = x.to(device), y.to(device)
    for attack in (FGSM(eps=0.15), PGD(eps=0.15, steps=10), PGD(norm="l2", eps=1.5, step=0.1)):
        result = attack(model_gpu, xg, yg)
        assert result.x_adv.device == xg.device and result.grad_evals.device == xg.device
        _check_result(model_gpu, xg, yg, result, attack.norm, attack.eps)
        assert torch.equal(result.x_adv, attack(model_gpu, xg, yg).x_adv)
