"""Proximal operators and projections of the PDPGD attack (thesis eq. 5.11–5.16)."""

from __future__ import annotations

import pytest
import torch

from robustness import threat
from robustness.threat import (
    project_l1_ball,
    project_simplex,
    prox_group_l0,
    prox_l0,
    prox_l1,
    prox_l2,
    prox_linf,
)

DTYPES = (torch.float32, torch.float64)
PROX = {name: threat.norm(name).prox for name in threat.NORMS}  # what attacks call


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bisection_l1_projection(v: torch.Tensor, radius: float) -> torch.Tensor:
    """Reference projection onto the l1 ball of one vector: bisection on θ in float64."""
    v = v.double().flatten()
    if v.abs().sum() <= radius:
        return v
    lo, hi = 0.0, v.abs().max().item()
    for _ in range(200):
        theta = (lo + hi) / 2
        if (v.abs() - theta).clamp_min(0).sum() > radius:
            lo = theta
        else:
            hi = theta
    return v.sign() * (v.abs() - hi).clamp_min(0)


def _objective(z: torch.Tensor, u: torch.Tensor, mu: torch.Tensor, norm: str) -> torch.Tensor:
    """½‖z − u‖² + μ‖z‖ per example (the function each prox minimises)."""
    flat = z.flatten(1)
    size = {
        "l2": flat.norm(dim=1),
        "l1": flat.abs().sum(1),
        "linf": flat.abs().amax(1),
    }[norm]
    return 0.5 * (z - u).flatten(1).pow(2).sum(1) + mu * size


# ---------------------------------------------------------------------------- closed forms


def test_closed_forms_on_hand_examples():
    u = torch.tensor([[3.0, -4.0], [0.3, 0.4]])
    # l2: ‖u‖ = 5 and 0.5; μ = 1 shrinks the first to norm 4 and zeroes the second.
    assert torch.allclose(prox_l2(u, 1.0), torch.tensor([[2.4, -3.2], [0.0, 0.0]]))
    assert torch.allclose(prox_l1(u, 1.0), torch.tensor([[2.0, -3.0], [0.0, 0.0]]))
    assert torch.allclose(prox_l1(u, 0.1), torch.tensor([[2.9, -3.9], [0.2, 0.3]]))
    # linf: clip at t with Σ(|u_i| − t)_+ = μ: μ = 1 → t = 3 for the first row; the second
    # row's l1 norm 0.7 ≤ 1, so the prox is 0.
    assert torch.allclose(prox_linf(u, 1.0), torch.tensor([[3.0, -3.0], [0.0, 0.0]]))
    v = torch.tensor([[3.0, 1.0, -2.0]])
    assert torch.allclose(prox_linf(v, 1.0), torch.tensor([[2.0, 1.0, -2.0]]))
    assert torch.allclose(prox_linf(v, 3.0), torch.tensor([[1.0, 1.0, -1.0]]))
    # l0: keep |u_i| > sqrt(2μ); μ = 0.5 → threshold 1, which itself is not kept.
    w = torch.tensor([[1.0, -1.5, 0.99, 2.0, -0.5]])
    assert torch.equal(prox_l0(w, 0.5), torch.tensor([[0.0, -1.5, 0.0, 2.0, 0.0]]))


def test_simplex_projection_hand_example_and_invariants():
    p = project_simplex(torch.tensor([[0.5, 0.2, 0.1]]), 1.0)
    assert torch.allclose(p, torch.tensor([[0.5 + 0.2 / 3, 0.2 + 0.2 / 3, 0.1 + 0.2 / 3]]))
    v = torch.rand(16, 3, 5, 5, generator=_gen(1), dtype=torch.float64) * 2
    radius = torch.linspace(0.1, 5.0, 16, dtype=torch.float64)
    p = project_simplex(v, radius)
    assert p.shape == v.shape
    assert (p >= 0).all()
    assert torch.allclose(p.flatten(1).sum(1), radius)
    # v − p is constant (= θ) on the support: the optimality condition of the projection.
    diff = (v - p).flatten(1)
    support = p.flatten(1) > 0
    theta = torch.where(support, diff, torch.nan).nanmean(1, keepdim=True)
    assert torch.allclose(torch.where(support, diff, theta), theta.expand_as(diff))


# ---------------------------------------------------------------------------- l1 ball


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_ball_projection_matches_bisection(dtype):
    v = torch.randn(12, 1, 6, 6, generator=_gen(2), dtype=torch.float64).to(dtype)
    radius = 3.0
    p = project_l1_ball(v, radius)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for i in range(len(v)):  # reference only: the operator itself is batched
        ref = _bisection_l1_projection(v[i], radius)
        assert torch.allclose(p[i].double().flatten(), ref, atol=tol)


def test_l1_ball_projection_satisfies_the_variational_inequality():
    v = torch.randn(8, 30, generator=_gen(3), dtype=torch.float64) * 0.5
    radius = torch.linspace(0.5, 8.0, 8, dtype=torch.float64)
    p = project_l1_ball(v, radius)
    assert (p.abs().sum(1) <= radius + 1e-9).all()
    # ⟨v − p, z − p⟩ ≤ 0 for every z in the ball (random points on and inside the sphere).
    z = torch.randn(200, 8, 30, generator=_gen(4), dtype=torch.float64)
    scale = torch.rand(200, 8, 1, generator=_gen(5), dtype=torch.float64)
    z = z / z.abs().sum(2, keepdim=True) * radius[None, :, None] * scale
    inner = ((v - p)[None] * (z - p[None])).sum(2)
    assert inner.max() <= 1e-9


def test_l1_ball_projection_when_every_example_is_inside():
    v = torch.randn(5, 1, 4, 4, generator=_gen(6))
    v = v / v.flatten(1).abs().sum(1).view(-1, 1, 1, 1) * 0.9  # ‖v‖₁ = 0.9 < 1
    assert torch.equal(project_l1_ball(v, 1.0), v)


def test_l1_ball_projection_on_a_mixed_batch():
    v = torch.randn(6, 10, generator=_gen(7), dtype=torch.float64)
    v[::2] *= 0.01  # inside the unit ball
    v[1::2] *= 2.0  # outside
    p = project_l1_ball(v, 1.0)
    assert torch.equal(p[::2], v[::2])
    assert torch.allclose(p[1::2].abs().sum(1), torch.ones(3, dtype=torch.float64))
    for i in range(1, 6, 2):
        assert torch.allclose(p[i], _bisection_l1_projection(v[i], 1.0), atol=1e-10)


def test_l1_ball_projection_of_zero_and_of_a_single_coordinate():
    assert torch.equal(project_l1_ball(torch.zeros(2, 3), 1.0), torch.zeros(2, 3))
    p = project_l1_ball(torch.tensor([[0.0, -5.0, 0.0]]), 2.0)
    assert torch.allclose(p, torch.tensor([[0.0, -2.0, 0.0]]))


# ---------------------------------------------------------------------------- l∞, l2, l1 optimality


@pytest.mark.parametrize("dtype", DTYPES)
def test_moreau_decomposition_for_linf(dtype):
    u = torch.randn(10, 1, 5, 5, generator=_gen(8), dtype=torch.float64).to(dtype)
    mu = torch.logspace(-2, 1, 10, dtype=dtype)
    view = mu.view(-1, 1, 1, 1)
    rebuilt = prox_linf(u, mu) + view * project_l1_ball(u / view, 1.0)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(rebuilt, u, atol=tol)


@pytest.mark.parametrize("norm", ["l2", "l1", "linf"])
def test_prox_minimises_its_objective(norm):
    """No random perturbation of prox(u) lowers ½‖z − u‖² + μ‖z‖ (convex: local = global)."""
    u = torch.randn(6, 8, generator=_gen(9), dtype=torch.float64)
    mu = torch.tensor([0.01, 0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    z = PROX[norm](u, mu)
    best = _objective(z, u, mu, norm)
    gen = _gen(10)
    for scale in (1e-1, 1e-3, 1e-6):
        noise = torch.randn(500, 6, 8, generator=gen, dtype=torch.float64) * scale
        values = torch.stack([_objective(z + d, u, mu, norm) for d in noise])
        assert (values >= best - 1e-12).all(), norm


@pytest.mark.parametrize("norm", ["l2", "l1", "linf"])
def test_prox_of_a_large_mu_is_zero_and_of_a_tiny_mu_is_identity(norm):
    u = torch.randn(4, 7, generator=_gen(11), dtype=torch.float64)
    assert torch.allclose(PROX[norm](u, 1e6), torch.zeros_like(u))
    assert torch.allclose(PROX[norm](u, 1e-9), u, atol=1e-8)


# ---------------------------------------------------------------------------- l0, group l0


def test_l0_and_group_l0_are_exact_hard_thresholds():
    u = torch.randn(3, 3, 4, 4, generator=_gen(12))
    mu = torch.tensor([0.02, 0.3, 2.0])
    thr = (2 * mu).sqrt().view(-1, 1, 1, 1)
    out = prox_l0(u, mu)
    assert torch.equal(out, torch.where(u.abs() > thr, u, torch.zeros_like(u)))
    grouped = prox_group_l0(u, mu)
    keep = u.abs().amax(1, keepdim=True) > thr
    assert torch.equal(grouped, u * keep)
    # a pixel is either kept whole or zeroed whole
    kept = grouped.ne(0).any(1)
    assert torch.equal(grouped.ne(0).sum(1)[kept], u.ne(0).sum(1)[kept])
    assert torch.equal(PROX["l0_pixel"](u, mu), grouped)
    with pytest.raises(ValueError, match="N×C×H×W"):
        prox_group_l0(torch.zeros(2, 5), 0.1)


def test_l0_prox_with_a_box_is_the_exact_minimiser_over_the_box():
    """Brute force per entry: 0 (cost ½d·u²) against the box's nearest point to u (μ + ½d(c−u)²)."""
    g = _gen(21)
    u = torch.randn(4, 1, 5, 5, generator=g)
    x = torch.rand(4, 1, 5, 5, generator=g).round()  # pixels at 0 or 1, as much of MNIST
    box = (-x, 1 - x)
    d = torch.rand(4, 1, 5, 5, generator=g) + 0.5
    mu = torch.tensor([0.01, 0.1, 0.3, 1.0])
    for metric in (None, d):
        w = torch.ones_like(u) if metric is None else metric
        z = prox_l0(u, mu, metric, box)
        c = u.clamp(box[0], box[1])
        keep_cost = mu.view(-1, 1, 1, 1) + 0.5 * w * (c - u).square()
        drop_cost = 0.5 * w * u.square()
        assert torch.equal(z, torch.where(keep_cost < drop_cost, c, torch.zeros_like(u)))
        assert (z >= box[0]).all() and (z <= box[1]).all()
    # a push out of the box is never counted, however large: thresholding then clipping keeps it
    pushed = torch.tensor([[5.0, -5.0, 0.8]])
    at_edge = torch.tensor([[1.0, 0.0, 0.0]])  # x: the first two cannot move that way
    z = prox_l0(pushed, 0.1, box=(-at_edge, 1 - at_edge))
    assert torch.equal(z, torch.tensor([[0.0, 0.0, 0.8]]))
    assert prox_l0(pushed, 0.1).ne(0).sum() == 3
    grouped = prox_group_l0(u, mu, box=box)
    assert torch.equal(grouped, prox_l0(u, mu, box=box))  # one channel: the same operator


def test_box_is_clipped_after_the_convex_proxes():
    u = torch.randn(3, 1, 4, 4, generator=_gen(22))
    x = torch.rand(3, 1, 4, 4, generator=_gen(23))
    for name in ("linf", "l2", "l1"):
        ball = threat.norm(name)
        z = ball.prox(u, 0.1, box=(-x, 1 - x))
        assert torch.equal(z, ball.prox(u, 0.1).clamp(-x, 1 - x))


def test_group_l0_keeps_small_channels_of_a_large_pixel():
    u = torch.zeros(1, 3, 1, 2)
    u[0, :, 0, 0] = torch.tensor([2.0, 0.01, -0.01])  # one large channel: whole pixel kept
    u[0, :, 0, 1] = torch.tensor([0.5, 0.5, 0.5])  # all below threshold 1: pixel zeroed
    out = prox_group_l0(u, 0.5)
    assert torch.equal(out[0, :, 0, 0], u[0, :, 0, 0])
    assert torch.equal(out[0, :, 0, 1], torch.zeros(3))


# ---------------------------------------------------------------------------- plumbing


@pytest.mark.parametrize("name", sorted(PROX))
@pytest.mark.parametrize("dtype", DTYPES)
def test_per_example_mu_equals_one_call_per_example(name, dtype):
    u = torch.randn(4, 3, 5, 5, generator=_gen(13), dtype=torch.float64).to(dtype)
    mu = torch.tensor([0.001, 0.05, 0.3, 1.5], dtype=dtype)
    out = PROX[name](u, mu)
    assert out.shape == u.shape and out.dtype == dtype and out.device == u.device
    for i in range(len(u)):
        single = PROX[name](u[i : i + 1], float(mu[i]))
        assert torch.allclose(out[i : i + 1], single, atol=1e-6)


def test_inputs_are_not_modified_and_bad_mu_is_rejected():
    u = torch.randn(3, 4, generator=_gen(14))
    saved = u.clone()
    for name in ("l2", "l1", "linf", "l0"):
        PROX[name](u, 0.3)
    project_l1_ball(u, 0.5)
    assert torch.equal(u, saved)
    with pytest.raises(ValueError, match="mu must be positive"):
        prox_l1(u, 0.0)
    with pytest.raises(ValueError, match="shape"):
        prox_l1(u, torch.ones(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(PROX))
def test_device_is_preserved(name):
    u = torch.randn(2, 3, 4, 4, device="cuda")
    mu = torch.tensor([0.1, 0.2], device="cuda")
    out = PROX[name](u, mu)
    assert out.device == u.device
    assert torch.allclose(out.cpu(), PROX[name](u.cpu(), mu.cpu()), atol=1e-6)


# ---------------------------------------------------------------------------- diagonal metric


def _metric_objective(z, u, mu, d, norm):
    """½ Σ d_i (z_i − u_i)² + μ‖z‖ per example (what a prox in the metric d minimises)."""
    flat = z.flatten(1)
    size = {
        "l2": flat.norm(dim=1),
        "l1": flat.abs().sum(1),
        "linf": flat.abs().amax(1),
        "l0": flat.ne(0).sum(1).to(z.dtype),
    }[norm]
    return 0.5 * (d * (z - u).square()).flatten(1).sum(1) + mu * size


@pytest.mark.parametrize("name", sorted(PROX))
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_uniform_metric_gives_the_plain_prox(name, dtype):
    u = torch.randn(5, 3, 4, 4, generator=_gen(20), dtype=torch.float64).to(dtype)
    mu = torch.tensor([1e-3, 0.05, 0.3, 1.5, 40.0], dtype=dtype)
    plain = PROX[name](u, mu)
    assert torch.allclose(PROX[name](u, mu, torch.ones_like(u)), plain, atol=1e-6)
    assert torch.allclose(PROX[name](u, mu, None), plain)


@pytest.mark.parametrize("norm", ["l2", "l1", "linf"])
def test_metric_prox_minimises_its_objective(norm):
    u = torch.randn(6, 8, generator=_gen(21), dtype=torch.float64)
    d = 0.05 + torch.rand(6, 8, generator=_gen(22), dtype=torch.float64)
    mu = torch.tensor([0.01, 0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    z = PROX[norm](u, mu, d)
    best = _metric_objective(z, u, mu, d, norm)
    gen = _gen(23)
    for scale in (1e-1, 1e-3, 1e-6):
        noise = torch.randn(500, 6, 8, generator=gen, dtype=torch.float64) * scale
        values = torch.stack([_metric_objective(z + e, u, mu, d, norm) for e in noise])
        assert (values >= best - 1e-10).all(), norm
    assert PROX[norm](u, torch.full((6,), 1e6, dtype=torch.float64), d).eq(0).all()


def test_metric_l0_is_the_exact_separable_minimiser():
    u = torch.randn(3, 10, generator=_gen(24), dtype=torch.float64)
    d = 0.05 + torch.rand(3, 10, generator=_gen(25), dtype=torch.float64)
    mu = torch.tensor([0.01, 0.2, 1.0], dtype=torch.float64)
    z = prox_l0(u, mu, d)
    # per coordinate: keeping costs μ, zeroing costs ½ d_i u_i²
    keep = 0.5 * d * u.square() > mu.view(-1, 1)
    assert torch.equal(z, torch.where(keep, u, torch.zeros_like(u)))
    grouped = prox_group_l0(u.view(3, 2, 5, 1), mu, d.view(3, 2, 5, 1))
    pixel = keep.view(3, 2, 5, 1).any(1, keepdim=True)
    assert torch.equal(grouped, u.view(3, 2, 5, 1) * pixel)
    with pytest.raises(ValueError, match="metric must be shaped"):
        prox_l1(u, 0.1, torch.ones(3, 9, dtype=torch.float64))
