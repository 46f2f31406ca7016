"""PDGD and PDPGD minimum-norm attacks (thesis chapter 5, Algorithms 2–3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustness import attacks, data, threat
from robustness.attacks.base import margin
from robustness.attacks.pdpgd import DEFAULT_LR, DEFAULT_LR_ADAM, PDGD, PDPGD, RELAX
from robustness.threat import lp_norm, pixel_l0

STEPS = 100
ATTACKS = {
    "pdgd": PDGD(steps=STEPS),
    "linf": PDPGD(norm="linf", steps=STEPS),
    "l2": PDPGD(norm="l2", steps=STEPS),
    "l1": PDPGD(norm="l1", steps=STEPS),
    "l0": PDPGD(norm="l0", steps=STEPS),
    "l0_pixel": PDPGD(norm="l0_pixel", steps=STEPS),
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lenet(trained_lenet5) -> nn.Module:
    """The shared briefly trained LeNet-5 (tests/robustness/conftest.py)."""
    return trained_lenet5(64)[0]


@pytest.fixture(scope="module")
def batch(lenet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ten test images; the last two get a wrong label so they start misclassified."""
    ds = data.synthetic(n_train=512, n_test=64, seed=0)
    x, y = ds.test.x[:10], ds.test.y[:10].clone()
    with torch.no_grad():
        pred = lenet(x).argmax(1)
    assert (pred[:8] == y[:8]).all()
    y[8:] = (pred[8:] + 1) % 10
    correct = torch.arange(10) < 8
    return x, y, correct


@pytest.fixture(scope="module")
def results(lenet, batch) -> dict:
    x, y, _ = batch
    return {key: attack(lenet, x, y) for key, attack in ATTACKS.items()}


def _affine(w: torch.Tensor, b: float) -> nn.Module:
    """Binary affine classifier on flattened images: z_0 = w·x + b, z_1 = 0."""
    lin = nn.Linear(w.numel(), 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = w.flatten()
        lin.bias.copy_(torch.tensor([b, 0.0]))
    return nn.Sequential(nn.Flatten(), lin).double()


@pytest.fixture(scope="module")
def affine_case():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 1, 12, 12, generator=gen, dtype=torch.float64)
    x = 0.35 + 0.3 * torch.rand(3, 1, 12, 12, generator=gen, dtype=torch.float64)
    return w, x


# ---------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("key", list(ATTACKS))
def test_result_invariants(key, results, batch, lenet):
    x, y, correct = batch
    res = results[key]
    attack = ATTACKS[key]
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.device == x.device
    assert res.norm == attack.norm
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    # every correctly classified example is attacked successfully
    assert res.success.all()
    with torch.no_grad():
        assert torch.equal(res.success, lenet(res.x_adv).argmax(1) != y)
    # norms are the attack's norm of the returned perturbation (pixels for l0_pixel)
    expected = pixel_l0(res.x_adv - x) if key == "l0_pixel" else lp_norm(res.x_adv - x, res.norm)
    assert torch.allclose(res.norms, expected)
    assert (res.norms[correct] > 0).all()
    # already misclassified: unchanged, norm 0, no gradient spent
    assert torch.equal(res.x_adv[~correct], x[~correct])
    assert (res.norms[~correct] == 0).all()
    assert (res.grad_evals[~correct] == 0).all() and (res.iterations[~correct] == 0).all()
    assert (res.grad_evals[correct] == STEPS).all()
    assert res.grad_evals.dtype == torch.int64 and res.iterations.dtype == torch.int64
    lam = res.extras["lambda"]
    assert lam.shape == (len(x),) and (lam > 0).all() and torch.isfinite(lam).all()


def test_pdgd_beats_a_line_search_along_the_margin_gradient(results, batch, lenet):
    """PDGD's l2 norms are no larger than the first flip along −∇m (a DeepFool-like bound)."""
    x, y, correct = batch
    x, y = x[correct], y[correct]
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(margin(lenet(xg), y).sum(), xg)
    d = -g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    ts = torch.arange(1, 251) * 0.02  # t ∈ (0, 5]
    flip = torch.full((len(x),), float("inf"))
    with torch.no_grad():
        for t in ts.flip(0):  # reference only: smallest t in the grid that flips the label
            point = (x + t * d).clamp(0, 1)
            adv = lenet(point).argmax(1) != y
            flip = torch.where(adv, lp_norm(point - x, "l2"), flip)
    assert torch.isfinite(flip).all()
    pdgd = results["pdgd"].norms[correct]
    assert (pdgd <= flip * 1.001).all()
    assert pdgd.mean() < 0.97 * flip.mean()


def test_l0_attack_modifies_far_fewer_pixels_than_the_l2_attack(results, batch, lenet):
    x, y, correct = batch
    dense = lp_norm(results["pdgd"].x_adv - x, "l0")[correct]
    sparse = results["l0"].norms[correct]
    assert sparse.mean() < 0.2 * dense.mean()
    # on one channel, a pixel is a coordinate: the group operator does the same thing (l0_pixel
    # has no l1 relaxation, so compare with l0 without it)
    hard = PDPGD(norm="l0", steps=STEPS, relax=0.0)(lenet, x, y)
    assert torch.equal(results["l0_pixel"].x_adv, hard.x_adv)


def test_each_attack_wins_in_its_own_norm(results, batch):
    x, _, correct = batch

    def mean(key: str, norm: str) -> float:
        return lp_norm(results[key].x_adv - x, norm)[correct].mean().item()

    assert mean("linf", "linf") < mean("pdgd", "linf")
    assert mean("l1", "l1") < mean("pdgd", "l1")
    assert mean("pdgd", "l2") < mean("linf", "l2")
    assert mean("pdgd", "l2") < mean("l1", "l2")


# ---------------------------------------------------------------------------- analytic cases


@pytest.mark.parametrize(
    ("attack", "dual"),
    [
        (PDGD(), 2),
        (PDPGD(norm="l2"), 2),
        (PDPGD(norm="linf"), 1),
        (PDPGD(norm="l1"), float("inf")),
    ],
    ids=["pdgd", "pdpgd-l2", "pdpgd-linf", "pdpgd-l1"],
)
def test_affine_classifier_reaches_the_analytic_lp_norm(attack, dual, affine_case):
    """For z_0 − z_1 = w·x + b the minimal ‖r‖_p is m/‖w‖_q (q dual), inside the box here."""
    w, x = affine_case
    dual_norm = w.flatten().norm(p=dual).item()
    target = {"l2": 0.8, "linf": 0.05, "l1": 0.2}[attack.norm]  # box never binds
    b = -(x.flatten(1) @ w.flatten()).mean().item()
    model = _affine(w, b)
    # shift every image along w so its margin is exactly target·‖w‖_q
    m0 = x.flatten(1) @ w.flatten() + b
    shift = (target * dual_norm - m0) / w.flatten().pow(2).sum()
    x = x + shift.view(-1, 1, 1, 1) * w
    assert 0 < x.min() and x.max() < 1
    y = torch.zeros(len(x), dtype=torch.long)
    res = attack(model, x, y)
    assert res.success.all()
    assert (res.norms >= target * (1 - 1e-6)).all()
    assert (res.norms <= target * 1.05).all(), res.norms


def test_l0_pixel_counts_whole_pixels_on_colour_images():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(1, 3, 6, 6, generator=gen, dtype=torch.float64)
    x = 0.3 + 0.4 * torch.rand(4, 3, 6, 6, generator=gen, dtype=torch.float64)
    model = _affine(w, -(x.flatten(1) @ w.flatten()).min().item() + 0.5)
    y = torch.zeros(len(x), dtype=torch.long)
    res = PDPGD(norm="l0_pixel", steps=200)(model, x, y)
    assert res.norm == "l0_pixel" and res.success.all()
    assert torch.equal(res.norms, pixel_l0(res.x_adv - x))
    assert (res.norms < lp_norm(res.x_adv - x, "l0")).all()  # several channels per pixel


def test_softplus_loss_option(affine_case):
    w, x = affine_case
    model = _affine(w, -(x.flatten(1) @ w.flatten()).min().item() + 1.0)
    y = torch.zeros(len(x), dtype=torch.long)
    hinge = PDGD(steps=100)(model, x, y)
    soft = PDGD(steps=100, loss="softplus")(model, x, y)
    assert soft.success.all() and hinge.success.all()
    assert not torch.equal(soft.x_adv, hinge.x_adv)


# ---------------------------------------------------------------------------- restarts, seeds


@pytest.mark.parametrize("cls_kw", [(PDGD, {}), (PDPGD, {"norm": "linf"})], ids=["pdgd", "linf"])
def test_restarts_never_worsen_the_best_norm(cls_kw, lenet, batch):
    cls, kw = cls_kw
    x, y, correct = batch
    x, y = x[correct][:4], y[correct][:4]
    one = cls(steps=20, restarts=1, **kw)(lenet, x, y)
    three = cls(steps=20, restarts=3, **kw)(lenet, x, y)
    assert one.success.all() and three.success.all()
    assert (three.norms <= one.norms).all()
    assert (three.grad_evals == 60).all()


@pytest.mark.parametrize(
    ("kw", "dual"),
    [
        ({"norm": "l2", "optimizer": "adam"}, 2),
        ({"norm": "linf", "optimizer": "adam"}, 1),
        ({"norm": "l1", "optimizer": "adam"}, float("inf")),
        ({"norm": "linf", "lr_decay": "exponential"}, 1),
        ({"norm": "l1", "finetune": True}, float("inf")),
    ],
    ids=["adam-l2", "adam-linf", "adam-l1", "exp-linf", "finetune-l1"],
)
def test_options_reach_the_analytic_lp_norm(kw, dual, affine_case):
    """The optional primal steps, decay and fine-tuning also find m/‖w‖_q on an affine model."""
    w, x = affine_case
    attack = PDPGD(**kw)
    target = {"l2": 0.8, "linf": 0.05, "l1": 0.2}[attack.norm]
    b = -(x.flatten(1) @ w.flatten()).mean().item()
    model = _affine(w, b)
    m0 = x.flatten(1) @ w.flatten() + b
    shift = (target * w.flatten().norm(p=dual).item() - m0) / w.flatten().pow(2).sum()
    x = x + shift.view(-1, 1, 1, 1) * w
    y = torch.zeros(len(x), dtype=torch.long)
    res = attack(model, x, y)
    assert res.success.all()
    assert (res.norms >= target * (1 - 1e-6)).all()
    assert (res.norms <= target * 1.1).all(), res.norms


def test_finetune_costs_one_more_run_and_never_worsens(lenet, batch):
    x, y, correct = batch
    x, y = x[correct][:4], y[correct][:4]
    base = PDPGD(norm="l1", steps=20)(lenet, x, y)
    tuned = PDPGD(norm="l1", steps=20, finetune=True)(lenet, x, y)
    assert (tuned.grad_evals == 40).all() and tuned.success.all()
    assert (tuned.norms <= base.norms + 1e-6).all()


def test_adam_option_is_deterministic_and_differs_from_sgd(lenet, batch):
    x, y, correct = batch
    x, y = x[correct][:4], y[correct][:4]
    attack = PDPGD(norm="l0", steps=15, optimizer="adam")
    a, b = attack(lenet, x, y), attack(lenet, x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, PDPGD(norm="l0", steps=15)(lenet, x, y).x_adv)


def test_deterministic_under_a_seed(lenet, batch):
    x, y, correct = batch
    x, y = x[correct][:4], y[correct][:4]
    attack = PDPGD(norm="l1", steps=15, init="random", seed=3)
    a, b = attack(lenet, x, y), attack(lenet, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.norms, b.norms)
    other = PDPGD(norm="l1", steps=15, init="random", seed=4)(lenet, x, y)
    assert not torch.equal(a.x_adv, other.x_adv)


def test_parameters_and_mode_are_untouched(lenet, batch):
    x, y, _ = batch
    lenet.train()
    saved = [p.detach().clone() for p in lenet.parameters()]
    flags = [p.requires_grad for p in lenet.parameters()]
    try:
        PDPGD(norm="l2", steps=3)(lenet, x, y)
        PDGD(steps=3)(lenet, x, y)
        assert lenet.training and all(m.training for m in lenet.modules())
        assert [p.requires_grad for p in lenet.parameters()] == flags
        assert all(p.grad is None for p in lenet.parameters())
        assert all(torch.equal(p, s) for p, s in zip(lenet.parameters(), saved, strict=True))
    finally:
        lenet.eval()


def test_a_chunk_of_misclassified_examples_costs_nothing(lenet, batch):
    x, y, correct = batch
    res = PDGD(steps=5)(lenet, x[~correct], y[~correct])
    assert torch.equal(res.x_adv, x[~correct])
    assert res.success.all() and (res.grad_evals == 0).all() and (res.norms == 0).all()


# ---------------------------------------------------------------------------- configuration


def test_defaults_are_the_thesis_settings():
    a = PDPGD()
    assert (a.steps, a.lr_final_ratio, a.lambda_init, a.dual_lr, a.dual_ema) == (
        500,
        0.01,
        0.01,
        0.1,
        0.9,
    )
    assert (a.norm, a.loss, a.restarts, a.init, a.init_range, a.seed) == (
        "linf",
        "hinge",
        1,
        "zero",
        0.5,
        0,
    )
    assert (a.optimizer, a.lr_decay, a.finetune) == ("sgd", "linear", False)
    assert PDPGD(optimizer="adam").lr == DEFAULT_LR_ADAM["linf"]
    assert a.lr == DEFAULT_LR["linf"] and PDGD().lr == DEFAULT_LR["pdgd"]
    assert PDPGD(norm="l0").lr == DEFAULT_LR["l0"] and PDPGD(lr=0.01).lr == 0.01
    assert PDGD.norm == "l2"


def test_registry_builds_both_attacks_from_strings():
    a = attacks.build("pdpgd", norm="l1", steps="7", lr="0.05", seed="none")
    assert isinstance(a, PDPGD) and (a.norm, a.steps, a.lr, a.seed) == ("l1", 7, 0.05, None)
    assert a.describe()["attack"] == "pdpgd" and a.describe()["norm"] == "l1"
    b = attacks.build("pdgd", restarts="3")
    assert isinstance(b, PDGD) and b.restarts == 3 and b.describe()["norm"] == "l2"


@pytest.mark.parametrize(
    ("cls", "kw", "message"),
    [
        (PDPGD, {"norm": "l3"}, "norm must be one of"),
        (PDGD, {"steps": 0}, "steps must be"),
        (PDGD, {"lr": 0.0}, "lr must be positive"),
        (PDPGD, {"lr_final_ratio": 0.0}, "lr_final_ratio"),
        (PDPGD, {"lambda_init": -1.0}, "lambda_init"),
        (PDPGD, {"dual_ema": 1.0}, "dual_ema"),
        (PDGD, {"loss": "ce"}, "loss must be one of"),
        (PDGD, {"restarts": 0}, "restarts must be"),
        (PDGD, {"init": "gauss"}, "init must be one of"),
        (PDPGD, {"init_range": 0.0}, "init_range"),
        (PDGD, {"chunk_size": 0}, "chunk_size"),
        (PDPGD, {"optimizer": "rmsprop"}, "optimizer must be one of"),
        (PDGD, {"lr_decay": "cosine"}, "lr_decay must be one of"),
        (PDPGD, {"norm": "l0", "relax": 1.0}, "relax must be in"),
        (PDPGD, {"norm": "l0_pixel", "relax": 0.2}, "l0 norm only"),
    ],
)
def test_bad_parameters_are_rejected(cls, kw, message):
    with pytest.raises(ValueError, match=message):
        cls(**kw)


def test_extra_arguments_are_rejected(lenet, batch):
    x, y, _ = batch
    with pytest.raises(TypeError, match="no extra arguments"):
        PDGD(steps=1)(lenet, x, y, target=y)


def test_distance_counts_pixels_for_l0_pixel():
    r = torch.zeros(1, 3, 2, 2)
    r[0, :, 0, 0] = 0.1
    r[0, 1, 1, 1] = -0.2
    assert lp_norm(r, "l0_pixel").item() == 2 and lp_norm(r, "l0").item() == 4


def test_l0_relaxation_defaults_and_starts_on_the_l1_prox(lenet, batch):
    """The first ``relax`` steps take the l1 prox: with relax near 1 the support is l1's."""
    x, y, _ = batch
    assert PDPGD(norm="l0").relax == RELAX["l0"] > 0
    assert PDPGD(norm="l0_pixel").relax == 0
    assert PDPGD(norm="l1").relax == 0
    one = {"steps": 1, "lambda_init": 1.0}
    hard = PDPGD(norm="l0", relax=0.0, **one)
    soft = PDPGD(norm="l0", relax=0.5, **one)
    l1 = PDPGD(norm="l1", **one)
    # a first step (step 0 < relax·steps) is the l1 attack's step, not the hard threshold's
    g = torch.ones(2, 1, 2, 2)
    r = torch.zeros_like(g)
    w = torch.tensor([[0.1, 0.9], [0.1, 0.9]])  # λ = 1/9: l1 shrinks, l0 keeps the top pixel
    box = (torch.full_like(g, -1.0), torch.full_like(g, 1.0))
    g[:, :, 0, 0] = 2.0
    step = {"lr": 0.5, "step": 0, "state": {}, "box": box}
    ball = threat.norm("l0")
    soft_step = soft._primal_step(ball, r, g, w, **step)
    assert torch.equal(soft_step, l1._primal_step(threat.norm("l1"), r, g, w, **step))
    hard_step = hard._primal_step(ball, r, g, w, **step)
    assert soft_step.ne(0).sum() == 8 and hard_step.ne(0).sum() == 2
    # the relaxed attack is still an l0 attack: its norms count entries
    res = PDPGD(norm="l0", steps=20, relax=0.5)(lenet, x, y)
    assert torch.equal(res.norms, lp_norm(res.x_adv - x, "l0"))
