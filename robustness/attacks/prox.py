"""Proximal operators and projections for the PDPGD attack (thesis eq. 5.11–5.16, methods.md §4.5).

Every operator works per example on a batch shaped N×… (norms over all non-batch dimensions),
takes μ as a float or a per-example tensor of shape (N,), μ > 0, and keeps the input's device and
dtype. Nothing loops over examples; the l1-ball projection sorts once (O(n log n) per example).

Each prox also takes an optional diagonal ``metric`` d > 0 shaped like u (PDPGD with Adam, the
authors' later code): it then returns argmin_z μ‖z‖ + ½ Σ d_i (z_i − u_i)², which is the plain
prox when d ≡ 1. l1 and l0 are separable (thresholds μ/d_i and sqrt(2μ/d_i)); l∞ clips at the t
with Σ d_i (|u_i| − t)₊ = μ, found exactly by one sort; l2 shrinks z_i = d_i u_i / (d_i + c) with
c = μ/‖z‖₂ found by bisection (closed form when d is uniform).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "PROX",
    "project_l1_ball",
    "project_simplex",
    "prox_group_l0",
    "prox_l0",
    "prox_l1",
    "prox_l2",
    "prox_linf",
]

_TINY = 1e-30

Scale = float | torch.Tensor


def _per_example(value: Scale, like: torch.Tensor, what: str) -> torch.Tensor:
    """``value`` (a float or an (N,) tensor) as a tensor broadcastable against ``like`` (N×…)."""
    if not isinstance(value, torch.Tensor):
        if not value > 0:
            raise ValueError(f"{what} must be positive, got {value}")
        return torch.full((len(like),), float(value), device=like.device, dtype=like.dtype).view(
            -1, *([1] * (like.dim() - 1))
        )
    value = value.to(device=like.device, dtype=like.dtype)
    if value.dim() == 0:
        value = value.expand(len(like))
    if value.shape != (len(like),):
        raise ValueError(f"{what} must be a float or a tensor of shape ({len(like)},)")
    return value.view(-1, *([1] * (like.dim() - 1)))


def _check_metric(metric: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if metric is None:
        return None
    if metric.shape != like.shape:
        raise ValueError(f"metric must be shaped like u {tuple(like.shape)}")
    return metric.to(device=like.device, dtype=like.dtype)


def prox_l2(u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None) -> torch.Tensor:
    """prox of μ‖·‖₂: block soft threshold u·max(0, 1 − μ/‖u‖₂) (eq. 5.12); 0 stays 0."""
    mu = _per_example(mu, u, "mu")
    d = _check_metric(metric, u)
    if d is None:
        norms = u.flatten(1).norm(p=2, dim=1).view_as(mu)
        return u * (1 - mu / norms.clamp_min(_TINY)).clamp_min(0)
    # z = 0 iff ‖d∘u‖₂ ≤ μ; else z_i = d_i u_i/(d_i + c) where ψ(c) = c‖d∘u/(d + c)‖₂ = μ,
    # ψ increasing, bracketed by c ∈ μ/(‖d∘u‖ − μ)·[min d, max d]; geometric bisection.
    du = d * u
    size = du.flatten(1).norm(dim=1).view_as(mu)
    active = size > mu
    base = mu / (size - mu).clamp_min(_TINY)
    lo = base * d.flatten(1).amin(1).view_as(mu)
    hi = base * d.flatten(1).amax(1).view_as(mu)
    for _ in range(40):
        c = (lo * hi).sqrt()
        psi = (c * du / (d + c)).flatten(1).norm(dim=1).view_as(mu)
        high = psi > mu
        hi = torch.where(high, c, hi)
        lo = torch.where(high, lo, c)
    c = (lo * hi).sqrt()
    return torch.where(active, du / (d + c), torch.zeros_like(u))


def prox_l1(u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None) -> torch.Tensor:
    """prox of μ‖·‖₁: soft threshold sign(u)·max(|u| − μ, 0) (eq. 5.13)."""
    mu = _per_example(mu, u, "mu")
    d = _check_metric(metric, u)
    threshold = mu if d is None else mu / d
    return u.sign() * (u.abs() - threshold).clamp_min(0)


def project_simplex(v: torch.Tensor, radius: Scale = 1.0) -> torch.Tensor:
    """Euclidean projection of each v ≥ 0 onto {w ≥ 0, Σw = radius} (Duchi et al. 2008).

    Sort descending, cumulative sums, the last index ρ with u_ρ > (Σ_{i≤ρ} u_i − radius)/ρ gives
    θ = (Σ_{i≤ρ} u_i − radius)/ρ, and the projection is max(v − θ, 0).
    """
    radius = _per_example(radius, v, "radius").view(-1, 1)
    flat = v.flatten(1)
    if flat.shape[1] == 0:
        return v.clone()
    u = flat.sort(dim=1, descending=True).values
    excess = u.cumsum(dim=1) - radius  # Σ_{i≤k} u_i − radius
    k = torch.arange(1, flat.shape[1] + 1, device=v.device, dtype=v.dtype)
    # ρ = the last index where the condition holds (it holds on a prefix; ≥ 1 when radius > 0).
    rho = torch.where(u * k > excess, k, torch.zeros_like(k)).amax(dim=1, keepdim=True)
    rho = rho.clamp_min(1).long()
    theta = excess.gather(1, rho - 1) / rho.to(v.dtype)
    return (flat - theta).clamp_min(0).view_as(v)


def project_l1_ball(v: torch.Tensor, radius: Scale = 1.0) -> torch.Tensor:
    """Euclidean projection of each example onto {‖w‖₁ ≤ radius}.

    Examples already inside the ball are returned unchanged, the others become
    sign(v)·P_simplex(|v|); the choice is a mask, so a batch where every example is inside (the
    original code's failure case) or outside is handled like any other.
    """
    r = _per_example(radius, v, "radius")
    inside = v.flatten(1).abs().sum(dim=1).view_as(r) <= r
    projected = v.sign() * project_simplex(v.abs(), r.flatten())
    return torch.where(inside, v, projected)


def prox_linf(u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None) -> torch.Tensor:
    """prox of μ‖·‖∞ by Moreau decomposition: u − μ·P_{‖·‖₁≤1}(u/μ) (eq. 5.11).

    Computed as u − P_{‖·‖₁≤μ}(u), the same point (μ·P_B(u/μ) = P_{μB}(u)) without dividing by
    a possibly tiny μ. With a metric d: sign(u)·min(|u|, t), t ≥ 0 the root of
    Σ d_i (|u_i| − t)₊ = μ (sort |u| descending; the weighted analogue of Duchi's threshold).
    """
    mu = _per_example(mu, u, "mu")
    d = _check_metric(metric, u)
    if d is None:
        return u - project_l1_ball(u, mu.flatten())
    a, order = u.abs().flatten(1).sort(dim=1, descending=True)
    w = d.flatten(1).gather(1, order)
    cum_w = w.cumsum(1)
    t_k = ((w * a).cumsum(1) - mu.view(-1, 1)) / cum_w.clamp_min(_TINY)
    k = torch.arange(1, a.shape[1] + 1, device=u.device)
    rho = torch.where(a > t_k, k, torch.zeros_like(k)).amax(1, keepdim=True).clamp_min(1)
    t = t_k.gather(1, rho - 1).clamp_min(0).view_as(mu)
    return u.sign() * torch.minimum(u.abs(), t)


def prox_l0(u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None) -> torch.Tensor:
    """prox of μ‖·‖₀: hard threshold, keep u_i where |u_i| > sqrt(2μ) (eq. 5.14); with a
    metric d, where sqrt(d_i)·|u_i| > sqrt(2μ)."""
    mu = _per_example(mu, u, "mu")
    d = _check_metric(metric, u)
    size = u.abs() if d is None else u.abs() * d.sqrt()
    return torch.where(size > (2 * mu).sqrt(), u, torch.zeros_like(u))


def prox_group_l0(u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None) -> torch.Tensor:
    """prox of μ·(number of modified pixels) for N×C×H×W: a pixel's channels are kept together
    when its largest |u| exceeds sqrt(2μ), else all zeroed (group hard threshold, eq. 5.16);
    with a metric d, when its largest sqrt(d_c)·|u_c| exceeds sqrt(2μ)."""
    if u.dim() != 4:
        raise ValueError(f"prox_group_l0 expects N×C×H×W, got shape {tuple(u.shape)}")
    mu = _per_example(mu, u, "mu")
    d = _check_metric(metric, u)
    size = u.abs() if d is None else u.abs() * d.sqrt()
    keep = size.amax(dim=1, keepdim=True) > (2 * mu).sqrt()
    return torch.where(keep, u, torch.zeros_like(u))


#: prox of μ‖·‖ by the norm's name (``l0_pixel``: the group operator over pixels).
PROX: dict[str, Callable[..., torch.Tensor]] = {
    "l2": prox_l2,
    "l1": prox_l1,
    "linf": prox_linf,
    "l0": prox_l0,
    "l0_pixel": prox_group_l0,
}
