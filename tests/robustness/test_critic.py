"""The adversary-critic defense (chapter 4): its two steps, second order, confidences, resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness import checkpoint, data, defenses, nets
from robustness.attacks.high_confidence import closest_target, hc_differentiable
from robustness.defenses.critic import (
    AdversaryCritic,
    CriticParams,
    critic_loss,
    gradient_penalty,
    weight_penalty,
)
from robustness.training import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny() -> data.Dataset:
    return data.synthetic(n_train=100, n_valid=20, n_test=20, seed=1)


def pretrained(tiny: data.Dataset, **params) -> tuple[nn.Module, AdversaryCritic, torch.optim.Adam]:
    """An mlp1200 after two pre-training steps (confidences set), in the critic phase."""
    torch.manual_seed(0)
    model = nets.build("mlp1200", in_shape=tiny.input_shape, num_classes=tiny.num_classes)
    defense = defenses.build("critic", params)
    defense.setup(model, device=CPU, epochs=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.5, 0.999))
    defense.begin_epoch(1)
    for start in (0, 50):
        x, y = tiny.train.x[start : start + 50], tiny.train.y[start : start + 50]
        optimizer.zero_grad(set_to_none=True)
        defense.loss(model, x, y).loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    defense.begin_epoch(2)
    return model, defense, optimizer


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_params_are_validated_and_lambda_follows_the_architecture():
    assert defenses.build("critic", {"weight": "0.3"}).params.weight == 0.3
    assert defenses.build("critic", {"weight": "none"}).params.weight is None
    assert defenses.build("critic", {"attack_steps": "3"}).params.attack_steps == 3
    for bad in (
        {"weight": "heavy"},
        {"weight": "-1"},
        {"attack_steps": "0"},
        {"ema_momentum": "1"},
    ):
        with pytest.raises(ValueError):
            defenses.build("critic", bad)
    assert AdversaryCritic.schedule == "ch4"
    for arch, expected in (("mlp1200", 0.5), ("lenet5", 0.1)):
        defense = defenses.build("critic")
        defense.setup(nets.build(arch), device=CPU, epochs=1)
        assert defense.weight == expected
        assert defense.critic is not None and defense.critic.blindspot_config["num_classes"] == 10
    explicit = AdversaryCritic(CriticParams(weight=0.2))
    explicit.setup(nets.build("mlp1200"), device=CPU, epochs=1)
    assert explicit.weight == 0.2


def test_pretraining_is_cross_entropy_plus_weight_decay_without_the_last_layer(tiny):
    torch.manual_seed(0)
    model = nets.build("mlp1200")
    defense = defenses.build("critic")
    defense.setup(model, device=CPU, epochs=2)
    defense.begin_epoch(1)
    x, y = tiny.train.x[:20], tiny.train.y[:20]
    out = defense.loss(model, x, y)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    decay = sum(m.weight.square().sum() for m in linears[:3]) / 2
    assert torch.allclose(weight_penalty(model), decay)
    assert torch.allclose(out.loss, F.cross_entropy(model(x), y) + 5e-6 * decay)
    assert defense._confidence_updates.sum() > 0  # the confidences started


def test_a_critic_batch_steps_the_critic_and_the_loop_steps_the_classifier(tiny):
    model, defense, optimizer = pretrained(tiny)
    x, y = tiny.train.x[:20], tiny.train.y[:20]
    with torch.no_grad():
        clean = model(x)
    before_f, before_d = snapshot(model), snapshot(defense.critic)

    seen = {}
    terms = defense.adversarial_terms

    def spy(model, x, x_adv, *args, **kwargs):
        seen["attack graph"] = x_adv.grad_fn is not None
        return terms(model, x, x_adv, *args, **kwargs)

    defense.adversarial_terms = spy
    out = defense.loss(model, x, y)
    assert seen == {"attack graph": True}  # step 4 gets x̂ with its graph, not a constant
    assert torch.isfinite(out.loss)
    assert torch.equal(out.logits.detach(), clean)
    assert all(p.grad is None for p in model.parameters())  # .grad untouched by the critic step
    assert all(torch.equal(a, b) for a, b in zip(before_f, model.parameters(), strict=True))
    after_d = snapshot(defense.critic)
    assert all(not torch.equal(a, b) for a, b in zip(before_d, after_d, strict=True))

    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before_f, model.parameters(), strict=True))
    assert all(p.grad is None for p in defense.critic.parameters())  # the critic is a constant
    assert all(torch.equal(a, b) for a, b in zip(after_d, defense.critic.parameters(), strict=True))


def test_the_classifier_gets_second_order_gradient_through_the_attack(tiny):
    model, defense, _ = pretrained(tiny)
    x = tiny.train.x[:20]
    params = list(model.parameters())
    logits = model(x)
    clean_conf, pred = logits.softmax(1).max(1)
    target = closest_target(model, x, pred)
    x_adv = hc_differentiable(model, x, target, defense.running_confidence()[target])
    with torch.no_grad():
        adv_pred = model(x_adv).argmax(1)
    success = adv_pred != pred
    assert 0 < success.sum() < len(x)  # means over the successful ones are not batch means

    def terms(x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(5)  # the same critic noise for both
        return defense.adversarial_terms(model, x, x_hat, adv_pred, pred, clean_conf)

    adv, rec = terms(x_adv)
    adv_d, rec_d = terms(x_adv.detach())
    assert torch.equal(adv, adv_d) and torch.equal(rec, rec_d)  # same values, different graphs
    torch.manual_seed(5)
    with torch.no_grad():
        fool = F.softplus(-defense.critic(x_adv).gather(1, adv_pred[:, None]).squeeze(1))
        x_rec = hc_differentiable(model, x_adv, pred, clean_conf)
    assert torch.allclose(adv, fool[success].mean())
    assert torch.allclose(rec, (x - x_rec).flatten(1).square().sum(1)[success].mean())
    # The cycle term depends on the clean confidence, which is not detached.
    conf_leaf = clean_conf.detach().requires_grad_(True)
    _, rec_c = defense.adversarial_terms(model, x, x_adv, adv_pred, pred, conf_leaf)
    assert torch.autograd.grad(rec_c, conf_leaf)[0].abs().sum() > 0
    # With x̂ a constant the critic term cannot reach the classifier at all.
    assert not adv_d.requires_grad
    with_graph = torch.autograd.grad(0.5 * adv + 0.01 * rec, params, retain_graph=True)
    detached = torch.autograd.grad(0.5 * adv_d + 0.01 * rec_d, params)
    second = torch.cat([(a - b).flatten() for a, b in zip(with_graph, detached, strict=True)])
    total = torch.cat([a.flatten() for a in with_graph])
    assert torch.isfinite(total).all()
    assert second.norm() > 1e-3 * total.norm() > 0


def test_no_successful_attack_gives_zero_terms_and_finite_gradients(tiny):
    model, defense, _ = pretrained(tiny)
    x = tiny.train.x[:10]
    logits = model(x)
    clean_conf, pred = logits.softmax(1).max(1)
    adv, rec = defense.adversarial_terms(model, x, x.clone(), pred, pred, clean_conf)
    assert adv.item() == 0 and rec.item() == 0
    loss = F.cross_entropy(logits, tiny.train.y[:10]) + 0.5 * adv + 0.01 * rec
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_the_straight_through_stop_mask_passes_gradient_to_the_confidence():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    x = torch.rand(6, 1, 4, 4)
    with torch.no_grad():
        probs = model(x).softmax(1)
    p_t, t = probs.max(1)
    c = (0.5 * p_t).requires_grad_(True)  # already reached: the hard mask stops at once
    x_hat = hc_differentiable(model, x, t, c, steps=1, overshoot=0.05)
    assert torch.equal(x_hat, x)  # forward: the indicator is 0, no step
    # The hard indicator is locally constant in C: moving C (while p_t > C) changes nothing.
    moved = hc_differentiable(model, x, t, c.detach() * 1.1, steps=1, overshoot=0.05)
    assert torch.equal(moved, x)

    v = torch.randn_like(x)
    (grad,) = torch.autograd.grad((x_hat * v).sum(), c)
    # Backward: d x̂/dC = (1+os) · σ'(C − p_t) · length · g/‖g‖ (sigmoid slope 1).
    xr = x.clone().requires_grad_(True)
    ell = F.log_softmax(model(xr), 1).gather(1, t[:, None]).squeeze(1)
    (g,) = torch.autograd.grad(ell.sum(), xr)
    g_norm = g.flatten(1).norm(dim=1)
    length = (ell.detach() - c.detach().log()).abs() / g_norm + 1e-4
    s = torch.sigmoid(c.detach() - p_t)
    expected = 1.05 * s * (1 - s) * length * ((g / g_norm.view(-1, 1, 1, 1)) * v).flatten(1).sum(1)
    assert (grad.abs() > 0).all()
    assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_running_confidence_is_a_bias_corrected_ema_per_predicted_class():
    torch.manual_seed(0)
    defense = defenses.build("critic")
    defense.setup(nets.build("mlp1200", in_shape=(1, 4, 4), num_classes=4), device=CPU, epochs=1)
    assert torch.equal(defense.running_confidence(), torch.ones(4))  # nothing seen yet

    first = torch.tensor([[3.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.0, 2.0, 0.0, 1.0]])
    second = torch.tensor([[0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 0.7, 0.2]])
    c1, c2 = first.softmax(1).amax(1), second.softmax(1).amax(1)
    defense.update_confidence(first)
    b0, b1 = (c1[0] + c1[1]) / 2, c1[2]
    after_first = defense.running_confidence()
    assert torch.allclose(after_first, torch.stack([b0, b1, one(), one()]))

    defense.update_confidence(second)
    m = 0.5
    ema1 = m * (1 - m) * b1 + (1 - m) * c2[0]  # biased EMA of class 1 after two updates
    hand = torch.stack([b0, ema1 / (1 - m**2), c2[1], one()])
    assert torch.allclose(defense.running_confidence(), hand)
    assert defense._confidence_updates.tolist() == [1, 2, 1, 0]
    assert defense.running_confidence()[0] == after_first[0]  # absent from batch 2: unchanged


def one() -> torch.Tensor:
    return torch.tensor(1.0)


def test_gradient_penalty_of_a_linear_critic_is_the_weight_row_norm():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    w, b = critic[1].weight, critic[1].bias
    x, x_adv = torch.rand(5, 1, 3, 4), torch.rand(5, 1, 3, 4)
    y, adv_pred = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 0, 1, 1])

    logit, penalty = gradient_penalty(critic, x, y)
    rows = w.detach()[y]
    assert torch.allclose(logit, (x.flatten(1) * rows).sum(1) + b.detach()[y])
    assert torch.allclose(penalty, (rows.norm(dim=1) - 1).square())

    z_real = x.flatten(1) @ w.detach().T + b.detach()
    z_adv = x_adv.flatten(1) @ w.detach().T + b.detach()
    gp = lambda c: (w.detach()[c].norm(dim=1) - 1).square().mean()  # noqa: E731
    hand = (
        F.softplus(-z_real.gather(1, y[:, None])).mean()
        + F.softplus(z_adv.gather(1, adv_pred[:, None])).mean()
        + 10.0 * (gp(y) + gp(adv_pred))
    )
    loss = critic_loss(critic, x, y, x_adv, adv_pred, 10.0)
    assert torch.allclose(loss, hand)

    # The penalty is trainable (create_graph): d/dW_j (‖W_j‖ − 1)² = 2(‖W_j‖ − 1)·W_j/‖W_j‖.
    (grad,) = torch.autograd.grad(penalty.sum(), w)
    norms = w.detach().norm(dim=1, keepdim=True)
    per_row = 2 * (norms - 1) * w.detach() / norms
    counts = torch.bincount(y, minlength=3).to(w.dtype)[:, None]
    assert torch.allclose(grad, counts * per_row, atol=1e-6)


def config(**kw) -> TrainConfig:
    base = {"arch": "mlp1200", "defense": "critic", "dataset": "synthetic", "batch_size": 50}
    return TrainConfig.from_schedule("ch4", **{**base, **kw})


def test_fit_trains_and_resumes_bit_identically(tiny, tmp_path):
    two = fit(config(epochs=2), tiny, device="cpu", checkpoint_path=tmp_path / "two.pt")
    losses = [h["train_loss"] for h in two.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    state = checkpoint.load(tmp_path / "two.pt")["defense"]
    assert {"critic", "optimizer", "scheduler", "confidence_ema"} <= set(state)
    assert state["confidence_updates"].sum() > 0

    part = tmp_path / "part.pt"
    fit(config(epochs=1), tiny, device="cpu", checkpoint_path=part)
    torch.manual_seed(123)  # disturb the global RNG between the runs
    resumed = fit(
        config(epochs=2), tiny, device="cpu", checkpoint_path=tmp_path / "part.pt", resume=True
    )
    assert resumed.resumed_from_epoch == 1
    assert resumed.weights_sha256 == two.weights_sha256

    # 2 → 3 resumes from a critic-phase checkpoint: the critic and its optimiser round-trip.
    three = fit(config(epochs=3), tiny, device="cpu", checkpoint_path=tmp_path / "three.pt")
    torch.manual_seed(321)
    again = fit(
        config(epochs=3), tiny, device="cpu", checkpoint_path=tmp_path / "part.pt", resume=True
    )
    assert again.resumed_from_epoch == 2
    assert again.weights_sha256 == three.weights_sha256
    final = checkpoint.load(tmp_path / "three.pt")["defense"]["critic"]
    redone = checkpoint.load(part)["defense"]["critic"]
    assert checkpoint.weights_sha256(final) == checkpoint.weights_sha256(redone)


def test_reusing_the_clean_pass_gives_the_earlier_loss_and_gradients(tiny):
    """The defense takes the closest target and the attacks' first steps from passes it has
    (bench/critic_cost.py); loss and gradients match recomputing every pass."""
    model, defense, _ = pretrained(tiny)
    x, y = tiny.train.x[:30], tiny.train.y[:30]
    params = list(model.parameters())
    p = defense.params
    critic_state = {k: v.clone() for k, v in defense.critic.state_dict().items()}
    optimizer_state = defense.optimizer.state_dict()

    def earlier() -> torch.Tensor:
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        clean_conf, pred = logits.softmax(1).max(1)
        target = closest_target(model, x, pred)
        x_adv = hc_differentiable(model, x, target, defense.running_confidence()[target])
        with torch.no_grad():
            adv_pred = model(x_adv).argmax(1)
        defense.critic_step(x, y, x_adv.detach(), adv_pred)
        adv, rec = defense.adversarial_terms(model, x, x_adv, adv_pred, pred, clean_conf)
        return ce + defense.weight * adv + p.rec_weight * rec

    confidences = (defense._confidence_ema.clone(), defense._confidence_updates.clone())
    torch.manual_seed(7)
    defense.update_confidence(model(x).detach())  # as loss() does first
    reference = earlier()
    expected = torch.autograd.grad(reference, params)
    defense.critic.load_state_dict(critic_state)
    defense.optimizer.load_state_dict(optimizer_state)
    defense._confidence_ema, defense._confidence_updates = confidences
    torch.manual_seed(7)
    loss = defense.loss(model, x, y).loss
    got = torch.autograd.grad(loss, params)
    assert torch.allclose(loss, reference, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_closest_target_from_a_pass_matches_the_batched_one(tiny):
    from robustness.attacks.high_confidence import closest_target_from

    torch.manual_seed(0)
    model = nets.build("lenet5", in_shape=tiny.input_shape, num_classes=tiny.num_classes)
    x = tiny.train.x[:40]
    leaf = x.detach().requires_grad_(True)
    logits = model(leaf)
    pred = logits.argmax(1)
    got = closest_target_from(logits, leaf, pred)
    assert torch.equal(got, closest_target(model, x, pred))
    assert (got != pred).all()
    # The graph is kept for the caller (the attack's first step reuses it).
    assert torch.autograd.grad(logits.sum(), leaf)[0].shape == x.shape
