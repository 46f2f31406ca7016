"""One table over every attack × every norm it supports: what ``Attack.__call__`` guarantees.

A tiny seeded network (convolution, batch norm, dropout) on synthetic 3×6×6 images, so each
case runs in milliseconds: the returned points lie in the box, ``success`` is what the model
says on them (by the attack's criterion), ``norms`` are the returned perturbation's, the model
comes back in its mode with its parameters, flags and ``.grad`` untouched, outputs keep the
input's device and dtype, empty and already-misclassified batches work, and progress reaches the
total while moving inside each chunk.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from robustness import attacks, threat
from robustness.attacks.base import Attack, AttackResult

N, CLASSES = 8, 5

# Small budgets per attack; small clips keep DeepFool and the high-confidence attack iterating.
FAST: dict[str, dict[str, Any]] = {
    "fgsm": {"eps": 0.1},
    "pgd": {"steps": 6, "restarts": 2},
    "deepfool": {"steps": 6, "clip": 0.02},
    "cw": {"binary_steps": 2, "steps": 6, "initial_const": 1.0},
    "hc": {"steps": 6, "clip": 0.02},
    "pdgd": {"steps": 6},
    "pdpgd": {"steps": 6},
}
PER_NORM: dict[tuple[str, str], dict[str, Any]] = {
    ("pgd", "linf"): {"eps": 0.05, "step": 0.01},
    ("pgd", "l2"): {"eps": 0.5, "step": 0.1},
}
ONE_STEP = {"fgsm"}  # attacks without iterations inside a chunk
TARGETED = {"hc"}  # success = argmax is the target, with the requested confidence

CASES = [
    pytest.param(name, norm, id=f"{name}-{norm}")
    for name in attacks.names()
    for norm in attacks.get_class(name).norms
]


def tiny_net() -> nn.Module:
    """A seeded convolution + batch norm + dropout net: its mode changes what it computes."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, CLASSES),
        )


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The net in eval mode, N images in [0,1] and their predicted (hence correct) labels."""
    model = tiny_net().eval()
    x = torch.rand(N, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def build(name: str, norm: str, **kw: Any) -> Attack:
    return attacks.build(name, norm=norm, **{**FAST[name], **PER_NORM.get((name, norm), {}), **kw})


def expected_success(name: str, model: nn.Module, res: AttackResult, y: torch.Tensor):
    """The attack's criterion, recomputed here on the returned points (model in eval mode)."""
    with torch.no_grad():
        logits = model.eval()(res.x_adv)
    if name in TARGETED:
        t, c = res.extras["target"], res.extras["confidence"]
        p_t = logits.softmax(1).gather(1, t[:, None]).squeeze(1)
        return (logits.argmax(1) == t) & (p_t >= c)
    return logits.argmax(1) != y


def check_result(name: str, model: nn.Module, x, y, res: AttackResult, norm: str) -> None:
    """Box, success, norms, shapes, dtypes and devices of one result."""
    assert isinstance(res, AttackResult) and len(res) == len(x) and res.norm == norm
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.device == x.device
    if len(x):
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.success.dtype == torch.bool and res.success.device == x.device
    assert torch.equal(res.success, expected_success(name, copy.deepcopy(model), res, y))
    assert res.norms.dtype == x.dtype
    assert torch.equal(res.norms, threat.norm(norm).distance(res.x_adv - x))
    for counts in (res.iterations, res.grad_evals):
        assert counts.dtype == torch.int64 and counts.shape == (len(x),) and (counts >= 0).all()
    for value in res.extras.values():
        assert len(value) == len(x) and value.device == x.device


def recorder() -> tuple[list[tuple[int, int]], Callable[[int, int], None]]:
    seen: list[tuple[int, int]] = []
    return seen, lambda done, total: seen.append((done, total))


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_invariants_hold_from_either_mode_and_leave_the_model_alone(name, norm, tiny):
    base, x, y = tiny
    runs = []
    for training in (True, False):
        model = copy.deepcopy(base).train(training)
        model[0].weight.requires_grad_(False)  # a mixed set of flags, which must survive
        flags = [p.requires_grad for p in model.parameters()]
        state = {k: v.clone() for k, v in model.state_dict().items()}  # incl. BN statistics
        res = build(name, norm, chunk_size=N // 2)(model, x, y)
        assert all(m.training is training for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
        check_result(name, base, x, y, res, norm)
        runs.append(res)
    # The mode on entry changes nothing: the attack runs in eval mode, seeded per chunk.
    first, second = runs
    assert torch.equal(first.x_adv, second.x_adv)
    assert torch.equal(first.grad_evals, second.grad_evals)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_progress_reaches_the_total_and_moves_inside_each_chunk(name, norm, tiny):
    model, x, y = tiny
    seen, progress = recorder()
    build(name, norm, chunk_size=N // 2)(model, x, y, progress=progress)
    done = [d for d, _ in seen]
    assert seen[0] == (0, N) and seen[-1] == (N, N)
    assert all(t == N for _, t in seen) and done == sorted(set(done))  # strictly increasing
    if name not in ONE_STEP:
        for start, stop in ((0, N // 2), (N // 2, N)):
            assert any(start < d < stop for d in done), (start, stop, done)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_an_empty_batch(name, norm, tiny):
    model, x, y = tiny
    seen, progress = recorder()
    res = build(name, norm)(model, x[:0], y[:0], progress=progress)
    check_result(name, model, x[:0], y[:0], res, norm)
    assert seen == [(0, 0)]


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_a_batch_of_misclassified_examples(name, norm, tiny):
    model, x, y = tiny
    wrong = (y + 1) % CLASSES
    res = build(name, norm)(model, x, wrong)
    check_result(name, model, x, wrong, res, norm)
    if name not in ONE_STEP | TARGETED:  # the rest leave them alone, at no cost
        assert res.success.all() and torch.equal(res.x_adv, x) and (res.norms == 0).all()
        assert not res.grad_evals.any() and not res.iterations.any()


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_float64_in_float64_out(name, norm, tiny):
    model, x, y = tiny
    model, x = copy.deepcopy(model).double(), x.double()
    res = build(name, norm)(model, x, y)
    check_result(name, model, x, y, res, norm)
    assert all(v.dtype in (torch.float64, torch.int64) for v in res.extras.values())


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "norm"), CASES)
def test_the_inputs_device_is_kept(name, norm, tiny):
    model, x, y = tiny
    device = torch.device("cuda")
    model, x, y = copy.deepcopy(model).to(device), x.to(device), y.to(device)
    res = build(name, norm, chunk_size=N // 2)(model, x, y)
    check_result(name, model, x, y, res, norm)


@pytest.mark.parametrize("name", attacks.names())
@pytest.mark.parametrize("norm", threat.NORMS)
def test_build_accepts_exactly_the_declared_norms(name, norm):
    cls = attacks.get_class(name)
    if norm in cls.norms:
        assert build(name, norm).norm == norm
    else:
        with pytest.raises(ValueError, match=f"supports the norms? .*not '{norm}'"):
            build(name, norm)


def test_call_is_final_and_extra_arguments_are_refused(tiny):
    with pytest.raises(TypeError, match="final"):

        class Sneaky(Attack):
            def __call__(self, model, x, y, **kwargs):  # type: ignore[misc]
                return None

    model, x, y = tiny
    with pytest.raises(TypeError, match="takes only target="):
        build("hc", "l2")(model, x, y, goal=y)
    with pytest.raises(ValueError, match="model is on"):
        build("fgsm", "linf")(copy.deepcopy(model).to("meta"), x, y)
