"""Carlini & Wagner l2: success, box, binary search, early abort, analytic distance, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustness import attacks
from robustness.attacks.cw import PRESETS, CarliniWagnerL2
from robustness.attacks.pgd import PGD
from robustness.threat import lp_norm

FAST = CarliniWagnerL2.preset("fast")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(trained_mlp):
    """The shared small MLP and 32 synthetic test images."""
    return trained_mlp(32)


@pytest.fixture(scope="module")
def fast_result(trained):
    model, x, y = trained
    return FAST(model, x, y)


def _check_result(model, x, y, result) -> None:
    """Shape/dtype/device, box, norms and success as the result claims them."""
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.x_adv.device == x.device
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.norm == "l2"
    assert torch.allclose(result.norms, lp_norm(result.x_adv - x, "l2"))
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
    # Where no adversarial was found, x comes back unchanged.
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    assert result.iterations.dtype == result.grad_evals.dtype == torch.int64
    assert torch.equal(result.iterations, result.grad_evals)


def test_fast_preset_fools_nearly_every_example_inside_the_box(trained, fast_result):
    model, x, y = trained
    result = fast_result
    _check_result(model, x, y, result)
    assert result.success_rate() >= 0.9
    assert (result.norms[result.success] > 0).all()
    assert (result.extras["const"][result.success] > 0).all()
    assert (result.grad_evals <= FAST.binary_steps * FAST.steps).all()


def test_fast_preset_finds_smaller_perturbations_than_a_large_step_pgd(trained, fast_result):
    model, x, y = trained
    baseline = PGD(norm="l2", eps=10.0, step=0.5, steps=50, random_start=False, loss="margin")(
        model, x, y
    )
    both = fast_result.success & baseline.success
    assert both.float().mean() >= 0.9
    assert fast_result.norms[both].mean() <= baseline.norms[both].mean()


def test_more_binary_steps_never_increase_an_examples_best_norm(trained, fast_result):
    model, x, y = trained
    # c = 0.01, 0.1, 1, 10 in four steps (×10 until an adversarial is found); the fifth bisects.
    fewer = CarliniWagnerL2.preset("fast", binary_steps=4)(model, x, y)
    more = fast_result
    assert fewer.success.float().mean() >= 0.5
    assert (more.success | ~fewer.success).all()
    both = more.success & fewer.success
    assert (more.norms[both] <= fewer.norms[both]).all()
    assert (more.norms[both] < fewer.norms[both]).any()  # the later steps did improve some
    # The first four binary steps are the same computation in both runs.
    assert (more.grad_evals >= fewer.grad_evals).all()


def test_the_smallest_adversarial_iterate_is_kept(trained):
    model, x, y = trained
    # One binary step with a large c and lr: the iterates cross the boundary at once and then
    # oscillate around it, so a longer run only adds candidates to choose from.
    runs = [
        CarliniWagnerL2(binary_steps=1, steps=s, initial_const=10.0, lr=0.05, abort_early=False)(
            model, x, y
        )
        for s in (20, 40, 80)
    ]
    assert all(r.success.all() for r in runs)
    for shorter, longer in zip(runs, runs[1:], strict=False):
        assert (longer.norms <= shorter.norms).all()
        assert (longer.norms < shorter.norms).any()


def test_abort_early_saves_gradient_passes_at_the_same_quality(trained, fast_result):
    model, x, y = trained
    full = CarliniWagnerL2.preset("fast", abort_early=False)(model, x, y)
    _check_result(model, x, y, full)
    assert (full.grad_evals == FAST.binary_steps * FAST.steps).all()
    aborted = fast_result
    assert aborted.grad_evals.sum() < 0.9 * full.grad_evals.sum()
    assert torch.equal(aborted.success, full.success)
    ok = full.success
    assert aborted.norms[ok].mean() <= 1.03 * full.norms[ok].mean()


def test_already_misclassified_examples_cost_nothing(trained):
    model, x, y = trained
    x, y = x[:12], y[:12].clone()
    y[:4] = (y[:4] + 1) % 10
    result = CarliniWagnerL2.preset("fast", steps=20)(model, x, y)
    _check_result(model, x, y, result)
    assert result.success[:4].all() and (result.norms[:4] == 0).all()
    assert torch.equal(result.x_adv[:4], x[:4])
    assert (result.grad_evals[:4] == 0).all() and (result.iterations[:4] == 0).all()
    assert (result.extras["const"][:4] == 0).all()
    assert (result.grad_evals[4:] > 0).all()


def test_cw_is_deterministic(trained, fast_result):
    model, x, y = trained
    again = FAST(model, x, y)
    assert torch.equal(again.x_adv, fast_result.x_adv)
    assert torch.equal(again.grad_evals, fast_result.grad_evals)
    assert torch.equal(again.extras["const"], fast_result.extras["const"])


def test_confidence_demands_a_margin(trained, fast_result):
    model, x, y = trained
    kappa = 2.0
    result = CarliniWagnerL2.preset("fast", confidence=kappa)(model, x, y)
    _check_result(model, x, y, result)
    logits = model(result.x_adv)
    own = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    ok = result.success
    assert ok.float().mean() >= 0.9
    assert (other[ok] - own[ok] > kappa - 1e-4).all()
    both = ok & fast_result.success
    assert (result.norms[both] > fast_result.norms[both]).all()


def test_cw_on_an_affine_classifier_reaches_the_analytic_distance():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(784, generator=gen)  # gaussian: the l2 and l∞ directions differ
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = w
        model[1].bias.zero_()
        model[1].bias[1] = -0.5 * w.sum()  # z1 − z0 = w·(x − ½)
    u = w / w.norm()
    signed = torch.linspace(0.2, 1.0, 16) * torch.tensor([1.0, -1.0]).repeat(8)
    noise = (torch.rand(16, 784, generator=gen) - 0.5) * 0.2
    noise -= (noise @ u)[:, None] * u
    x = (0.5 + noise + signed[:, None] * u).view(16, 1, 28, 28)
    assert x.min() >= 0.2 and x.max() <= 0.8  # the box plays no part
    y = (signed > 0).long()
    distance = (x.flatten(1) @ w - 0.5 * w.sum()).abs() / w.norm()
    assert torch.allclose(distance, signed.abs(), rtol=1e-4)

    result = FAST(model.eval(), x, y)
    _check_result(model, x, y, result)
    assert result.success.all()
    ratio = result.norms / distance
    assert (ratio >= 1 - 1e-4).all()  # nothing closer than the hyperplane is adversarial
    assert (ratio <= 1.05).all()


def test_cw_leaves_parameters_and_modes_untouched(make_mlp):
    torch.manual_seed(0)
    model = make_mlp(hidden=16, dropout=0.5).train()
    model[1].weight.requires_grad_(False)
    model[4].weight.grad = torch.ones_like(model[4].weight)
    params = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.rand(6, 1, 28, 28)
    y = torch.arange(6)
    attack = CarliniWagnerL2.preset("fast", binary_steps=2, steps=10)
    first = attack(model, x, y)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    assert flags == [p.requires_grad for p in model.parameters()]
    assert model[1].weight.grad is None
    assert torch.equal(model[4].weight.grad, torch.ones_like(model[4].weight))
    assert all(m.training for m in model.modules())
    # Eval mode during the attack: dropout is off, so the result does not vary.
    assert torch.equal(first.x_adv, attack(model, x, y).x_adv)


def test_presets_defaults_registry_and_validation():
    paper = CarliniWagnerL2()
    assert (paper.binary_steps, paper.steps, paper.lr, paper.initial_const) == (
        9,
        10_000,
        0.01,
        1e-3,
    )
    assert paper.confidence == 0 and paper.abort_early
    assert CarliniWagnerL2.preset("paper") == paper
    ch4 = CarliniWagnerL2.preset("thesis_ch4")
    assert (ch4.binary_steps, ch4.steps, ch4.initial_const) == (9, 1000, 1e-3)
    ch5 = CarliniWagnerL2.preset("thesis_ch5")
    assert (ch5.steps, ch5.initial_const, ch5.abort_early) == (10_000, 1e-2, False)
    assert set(PRESETS) == {"paper", "thesis_ch4", "thesis_ch5", "fast"}
    assert CarliniWagnerL2.preset("fast", steps=7).steps == 7
    with pytest.raises(ValueError, match="unknown C&W preset 'quick'"):
        CarliniWagnerL2.preset("quick")

    built = attacks.build("cw", steps="1000", initial_const="0.001", abort_early="no")
    assert isinstance(built, CarliniWagnerL2) and built.steps == 1000 and not built.abort_early
    assert built.describe()["norm"] == "l2" and built.describe()["attack"] == "cw"
    for bad, match in [
        ({"binary_steps": 0}, "binary_steps must be"),
        ({"steps": 0}, "steps must be"),
        ({"lr": 0.0}, "lr must be"),
        ({"initial_const": -1.0}, "initial_const must be"),
        ({"confidence": -0.5}, "confidence must be"),
        ({"chunk_size": 0}, "chunk_size must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            CarliniWagnerL2(**bad)


def test_chunks_are_independent(trained):
    model, x, y = trained
    attack = CarliniWagnerL2.preset("fast", binary_steps=2, steps=20)
    whole = attack(model, x[:10], y[:10])
    chunked = CarliniWagnerL2.preset("fast", binary_steps=2, steps=20, chunk_size=4)(
        model, x[:10], y[:10]
    )
    assert torch.equal(whole.success, chunked.success)
    assert torch.allclose(whole.norms, chunked.norms, atol=1e-5)


@pytest.mark.gpu
def test_cw_runs_on_the_inputs_device(make_mlp, trained, fast_result):
    model, x, y = trained
    device = torch.device("cuda")
    model_gpu = make_mlp().to(device).eval()
    model_gpu.load_state_dict(model.state_dict())
    xg, yg = x.to(device), y.to(device)
    result = FAST(model_gpu, xg, yg)
    assert result.x_adv.device == xg.device and result.grad_evals.device == xg.device
    _check_result(model_gpu, xg, yg, result)
    assert result.success_rate() >= 0.9
    ok = result.success & fast_result.success
    assert torch.allclose(result.norms[ok], fast_result.norms[ok].to(device), rtol=0.05)
