"""The chapter 3–5 defenses: AT, VAT, margin maximization and PGD training."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness import attacks, data, defenses, nets
from robustness.defenses.margin import margin_sensitivity
from robustness.defenses.pgd import PGDParams, adversarial_examples
from robustness.defenses.vat import vat_direction
from robustness.evaluation import average_robustness
from robustness.training import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

SUITE = ("at", "vat", "margin", "pgd")


def linear_model(d: int, k: int, *, seed: int, scale: float = 1.0) -> nn.Module:
    """Flatten + Linear in float64 with weights N(0, scale²/d)."""
    torch.manual_seed(seed)
    layer = nn.Linear(d, k)
    with torch.no_grad():
        layer.weight.normal_(0, scale / math.sqrt(d))
    return nn.Sequential(nn.Flatten(), layer).double()


# -- registry and parameters -------------------------------------------------------------------


def test_suite_is_registered_with_the_thesis_defaults():
    assert defenses.build("at").describe()["params"] == {"eps": 0.1, "weight": 1.0, "clip": False}
    assert defenses.build("vat").describe()["params"] == {
        "eps": 2.0,
        "xi": 1e-6,
        "alpha": 1.0,
        "power_iterations": 1,
    }
    assert defenses.build("margin").params.c == 0.1
    assert defenses.build("margin", {"norm": "l1"}).params.c == 0.01
    linf = defenses.build("pgd").params
    assert (linf.norm, linf.eps, linf.step, linf.steps, linf.random_start) == (
        "linf",
        0.3,
        0.01,
        40,
        True,
    )
    assert defenses.get_class("pgd").schedule == "constant"
    assert {defenses.get_class(n).schedule for n in ("at", "vat", "margin")} == {"ch3"}


def test_optional_floats_resolve_per_norm_and_accept_command_line_strings():
    l2 = defenses.build("pgd", {"norm": "l2"}).params
    assert (l2.eps, l2.step) == (2.0, 0.1)
    given = defenses.build("pgd", {"norm": "l2", "eps": "1.5", "step": "0.25"}).params
    assert (given.eps, given.step) == (1.5, 0.25)
    assert defenses.build("margin", {"norm": "l1", "c": "0.5"}).params.c == 0.5


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("at", {"eps": "-0.1"}, "eps"),
        ("vat", {"power_iterations": "0"}, "power_iterations"),
        ("vat", {"xi": "0"}, "xi"),
        ("margin", {"norm": "linf"}, "norm"),
        ("margin", {"loss": "mse"}, "loss"),
        ("margin", {"c": "big"}, "not a valid float"),
        ("pgd", {"norm": "l1"}, "norm"),
        ("pgd", {"step": "0"}, "step"),
        ("pgd", {"steps": "0"}, "steps"),
    ],
)
def test_invalid_parameters_are_rejected(name, params, message):
    with pytest.raises(ValueError, match=message):
        defenses.build(name, params)


# -- AT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [False, True])
def test_at_loss_equals_a_hand_computation_on_a_linear_model(clip):
    model = linear_model(6, 3, seed=0, scale=2.0)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    eps, lam = 0.3, 0.7

    def ce(flat):  # per-example cross-entropy by hand
        z = flat @ w.T + b
        return torch.logsumexp(z, 1) - z.gather(1, y[:, None]).squeeze(1)

    flat = x.flatten(1)
    p = (flat @ w.T + b).softmax(1)
    grad = (p - F.one_hot(y, 3).double()) @ w  # ∇ₓ CE of a linear softmax model
    adv = flat + eps * grad.sign()
    if clip:
        adv = adv.clamp(0, 1)
    expected = ce(flat).mean() + lam * ce(adv).mean()

    out = defenses.build("at", {"eps": eps, "weight": lam, "clip": clip}).loss(model, x, y)
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.logits, flat @ w.T + b)
    assert all(q.grad is None for q in model.parameters())
    unclipped = ce(flat).mean() + lam * ce(flat + eps * grad.sign()).mean()
    assert clip == (not torch.allclose(expected, unclipped))  # clipping matters here


# -- VAT -----------------------------------------------------------------------------------


def fisher_top_eigenvector(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dominant eigenvector of H = Wᵀ(diag p − ppᵀ)W per example, and λ2/λ1."""
    w = model[1].weight.detach().double()
    with torch.no_grad():
        p = model(x).double().softmax(1)
    fisher = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    hessian = torch.einsum("kd,nkl,le->nde", w, fisher, w)
    values, vectors = torch.linalg.eigh(hessian)
    return vectors[..., -1], values[:, -2] / values[:, -1]


def alignment(direction: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (direction.flatten(1).double() * v).sum(1).abs()


def random_alignment(v: torch.Tensor) -> torch.Tensor:
    r = torch.randn(v.shape, generator=torch.Generator().manual_seed(2), dtype=v.dtype)
    return alignment(r / r.norm(dim=1, keepdim=True), v)


def test_vat_power_iteration_finds_the_dominant_fisher_eigenvector():
    # KL(p(x) ‖ p(x+d)) ≈ ½ dᵀHd for z = Wx; float64, so ξ = 1e-6 is an exact difference.
    model = linear_model(32, 10, seed=0, scale=3.0)
    x = torch.rand(64, 1, 4, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v, gap = fisher_top_eigenvector(model, x)
    logits = model(x)

    def direction(iterations):
        gen = torch.Generator().manual_seed(3)
        return vat_direction(model, x, logits, xi=1e-6, power_iterations=iterations, generator=gen)

    one = alignment(direction(1), v)
    assert one.median() > 3 * random_alignment(v).median()
    assert one.median() > 0.6
    assert alignment(direction(3), v).median() > 0.99
    converged = alignment(direction(10), v)
    assert (converged[gap < 0.5] > 0.99).all()  # (λ2/λ1)^10 < 1e-3: converged
    assert (gap < 0.5).sum() >= 20
    d = direction(1)
    torch.testing.assert_close(d.flatten(1).norm(dim=1), torch.ones(64, dtype=torch.float64))
    assert all(q.grad is None for q in model.parameters())


def test_vat_direction_stays_informative_in_float32_with_xi_1e_6():
    # The training dtype: the finite difference is noisy but still points the right way.
    model = linear_model(32, 10, seed=0, scale=3.0).float()
    x = torch.rand(64, 1, 4, 8, generator=torch.Generator().manual_seed(1))
    v, _ = fisher_top_eigenvector(model, x)
    logits = model(x)
    gen = torch.Generator().manual_seed(3)
    one = alignment(vat_direction(model, x, logits, xi=1e-6, power_iterations=1, generator=gen), v)
    assert one.median() > 0.5
    assert one.median() > 3 * random_alignment(v).median()
    gen = torch.Generator().manual_seed(3)
    ten = alignment(vat_direction(model, x, logits, xi=1e-6, power_iterations=10, generator=gen), v)
    assert ten.median() > 0.99


def test_vat_loss_is_cross_entropy_plus_alpha_times_kl_at_the_virtual_point():
    model = linear_model(32, 10, seed=0, scale=3.0)
    x = torch.rand(8, 1, 4, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(8)
    defense = defenses.build("vat", {"alpha": 0.5, "eps": 1.5})
    torch.manual_seed(5)
    out = defense.loss(model, x, y)
    torch.manual_seed(5)
    logits = model(x)
    d = vat_direction(model, x, logits, xi=1e-6, power_iterations=1)
    p = logits.softmax(1)
    q = model(x + 1.5 * d).softmax(1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, y) + 0.5 * kl)
    assert kl > 1e-3  # the virtual point does change the prediction


# -- margin --------------------------------------------------------------------------------


def brute_force_sensitivity(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str
) -> torch.Tensor:
    """max_{j≠y} ‖∇z_j − ∇z_y‖ (squared l2 or l1), one Jacobian per example (with graph)."""
    values = []
    for xi, yi in zip(x, y, strict=True):
        jac = torch.autograd.functional.jacobian(
            lambda u: model(u[None])[0], xi, create_graph=True
        ).flatten(1)
        diff = jac - jac[yi]
        s = diff.square().sum(1) if norm == "l2" else diff.abs().sum(1)
        values.append(torch.cat([s[:yi], s[yi + 1 :]]).max())
    return torch.stack(values)


@pytest.mark.parametrize("arch", ["mlp", "mlp-batch-40", "lenet5"])
@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_margin_sensitivity_matches_a_brute_force_jacobian(arch, norm):
    torch.manual_seed(0)
    if arch.startswith("mlp"):
        # From 32 examples on the class gradients are a loop of backward passes, not vmap.
        model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 10))
        x = torch.rand(40 if arch == "mlp-batch-40" else 6, 1, 3, 4)
    else:
        model = nets.build("lenet5")
        x = torch.rand(3, 1, 28, 28)
    model = model.double()
    x, y = x.double(), torch.arange(len(x)) % 10

    fast = margin_sensitivity(model, x, y, norm)
    slow = brute_force_sensitivity(model, x, y, norm)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)

    # The penalty reaches every parameter by double backpropagation, as in the brute force.
    params = list(model.parameters())
    fast_grads = torch.autograd.grad(fast.sum(), params, allow_unused=True, materialize_grads=True)
    slow_grads = torch.autograd.grad(slow.sum(), params, allow_unused=True, materialize_grads=True)
    for g_fast, g_slow in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(g_fast, g_slow, rtol=1e-8, atol=1e-12)
    assert fast_grads[0].abs().sum() > 0  # the first layer only acts through ∇ₓz
    assert fast_grads[-1].abs().sum() == 0  # the last bias does not change ∇ₓz


@pytest.mark.parametrize("loss", ["hinge", "ce"])
def test_margin_loss_is_hinge_or_cross_entropy_plus_c_times_sensitivity(loss):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 10)).double()
    x, y = torch.rand(6, 1, 3, 4, dtype=torch.float64), torch.arange(6)
    out = defenses.build("margin", {"c": 0.3, "loss": loss}).loss(model, x, y)
    logits = model(x)
    own = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    data_loss = (
        (1 + other - own).clamp_min(0).mean() if loss == "hinge" else F.cross_entropy(logits, y)
    )
    expected = data_loss + 0.3 * brute_force_sensitivity(model, x, y, "l2").mean()
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.logits, logits)


# -- PGD training ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_training_examples_lie_in_the_ball_and_the_box(norm):
    ds = data.synthetic(n_train=32, n_valid=1, n_test=1, seed=1)
    model = linear_model(784, 10, seed=0, scale=3.0).float().train()
    x, y = ds.train.x, ds.train.y
    params = PGDParams(norm=norm, steps=10)
    x_adv = adversarial_examples(model, x, y, params)
    dist = (x_adv - x).flatten(1)
    dist = dist.abs().amax(1) if norm == "linf" else dist.norm(dim=1)
    assert (dist <= params.eps + 1e-5).all()
    assert (dist > 0.5 * params.eps).all()  # the attack used its budget
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    assert model.training
    assert all(q.grad is None for q in model.parameters())
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.1


def test_pgd_training_loss_is_cross_entropy_on_the_adversarial_examples_only():
    ds = data.synthetic(n_train=16, n_valid=1, n_test=1, seed=1)
    torch.manual_seed(0)
    model = nets.build("mlp1200")
    x, y = ds.train.x, ds.train.y
    defense = defenses.build("pgd", {"steps": "5"})
    torch.manual_seed(7)
    out = defense.loss(model, x, y)
    torch.manual_seed(7)
    x_adv = adversarial_examples(model, x, y, defense.params)
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x_adv), y))
    torch.testing.assert_close(out.logits, model(x))
    assert not out.logits.requires_grad


# -- the real training loop -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> data.Dataset:
    return data.synthetic(n_train=200, n_valid=50, n_test=50, seed=4)


def suite_config(name: str, epochs: int) -> TrainConfig:
    params = {"steps": "3"} if name == "pgd" else {}  # 3 PGD steps keep the test fast
    return TrainConfig.from_schedule(
        defenses.get_class(name).schedule,
        arch="mlp1200",
        defense=name,
        defense_params=params,
        dataset="synthetic",
        epochs=epochs,
        batch_size=50,
    )


@pytest.mark.parametrize("name", SUITE)
def test_every_defense_trains_and_resumes_bit_identically(name, tiny, tmp_path):
    full = fit(suite_config(name, 2), tiny, device="cpu", checkpoint_path=tmp_path / "full.pt")
    assert [h["epoch"] for h in full.history] == [1, 2]
    assert all(math.isfinite(h["train_loss"]) for h in full.history)
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]

    fit(suite_config(name, 1), tiny, device="cpu", checkpoint_path=tmp_path / "part.pt")
    resumed = fit(
        suite_config(name, 2), tiny, device="cpu", checkpoint_path=tmp_path / "part.pt", resume=True
    )
    assert resumed.resumed_from_epoch == 1
    assert resumed.weights_sha256 == full.weights_sha256
    assert resumed.history == [
        {**h, "seconds": r["seconds"], "images_per_second": r["images_per_second"]}
        for h, r in zip(full.history, resumed.history, strict=True)
    ]


# -- real MNIST -----------------------------------------------------------------------------


@pytest.fixture
def all_threads():
    """Real-MNIST training is no tiny-tensor test: use every core for it."""
    before = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("all_threads")
def test_at_resists_fgsm_and_margin_raises_deepfool_rho_on_mnist(tmp_path, settings):
    try:
        mnist = data.load_mnist(cache_dir=settings.BLINDSPOT_DATA_DIR)
    except data.DataSourceError as exc:
        pytest.skip(f"no MNIST source: {exc}")
    x, y = mnist.test.x[:500], mnist.test.y[:500]
    fgsm, deepfool = attacks.build("fgsm", eps=0.1), attacks.build("deepfool", steps=50)
    scores = {}
    for name in ("none", "at", "margin"):
        config = TrainConfig.from_schedule(
            "ch3", arch="mlp1200", defense=name, epochs=3, train_limit=3000, seed=0
        )
        model = fit(config, mnist, device="cpu", checkpoint_path=tmp_path / f"{name}.pt").model
        with torch.no_grad():
            correct = model(x).argmax(1) == y
            fgsm_error = (model(fgsm(model, x, y).x_adv).argmax(1) != y).float().mean().item()
        rho = average_robustness(x[:300], deepfool(model, x[:300], y[:300]), correct[:300])
        scores[name] = {"error": 1 - correct.float().mean().item(), "fgsm": fgsm_error, **rho}

    assert all(s["error"] < 0.15 for s in scores.values()), scores
    # Measured: FGSM error 0.86 (none) vs 0.33 (at); rho 0.106 (none) vs 0.183 (margin).
    assert scores["at"]["fgsm"] < scores["none"]["fgsm"] - 0.25, scores
    assert scores["margin"]["rho"] > 1.4 * scores["none"]["rho"], scores
