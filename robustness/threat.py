"""Perturbation norms as small objects: everything an attack does per norm, in one place.

One :class:`Norm` per norm (``linf``, ``l2``, ``l1``, ``l0``, ``l0_pixel``) carries the distance,
the dual norm (distances to hyperplanes), the projection onto the ε-ball, the steepest-ascent
direction, a random start and the proximal step, so one attack loop serves every norm (foolbox's
design). Operations a norm lacks (an l0 steepest direction) raise a ConfigError. Everything is
per example over the non-batch dimensions, batched (no loop over examples), and keeps the device
and dtype of its input. The proximal operators (thesis eq. 5.11–5.16, methods.md §4.5) and the
l1-ball projection they need are the module functions at the end.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from robustness.errors import ConfigError

NORMS = ("linf", "l2", "l1", "l0", "l0_pixel")
PROJECTED = ("linf", "l2")  # the norms of projected-gradient attacks (PGD, PGD training)
_TINY = 1e-12  # guards divisions by a norm
_PROX_TINY = 1e-30  # guards divisions inside the proximal operators

Scale = float | torch.Tensor  # a radius or μ: one number, or one per example
Box = tuple[torch.Tensor, torch.Tensor]  # per-entry bounds (lo, hi) on a perturbation, lo ≤ 0 ≤ hi


def per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-example vector (N,) viewed to broadcast against a batch shaped like ``like`` (N×…)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _batch_scale(eps: Scale, like: torch.Tensor) -> torch.Tensor:
    """ε as a tensor on ``like``'s device: a scalar, or per example (N,) viewed to broadcast."""
    eps = torch.as_tensor(eps, device=like.device, dtype=like.dtype)
    return per_example(eps, like) if eps.dim() == 1 else eps


def _counts(eps: Scale, like: torch.Tensor) -> torch.Tensor:
    """An l0 radius as per-example whole counts (N,): how many entries may stay non-zero."""
    eps = torch.as_tensor(eps, device=like.device, dtype=like.dtype)
    return eps.expand(len(like)).floor()


def _keep_largest(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Mask (N×P) of each row's ``k`` largest scores (ties to the lower index)."""
    ranks = scores.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return ranks < k[:, None]


class Norm:
    """One perturbation norm: distance, dual, ε-ball projection, steepest step, start, prox."""

    name: ClassVar[str]

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        """Per-example ‖r‖ (N×… → N)."""
        raise NotImplementedError

    def dual(self, w: torch.Tensor) -> torch.Tensor:
        """The dual norm ‖w‖_* over the last dimension: |f|/‖w‖_* is the distance from a point
        to the hyperplane f + wᵀr = 0 (DeepFool's linearised boundaries)."""
        raise self._undefined("dual norm")

    def project(self, r: torch.Tensor, eps: Scale) -> torch.Tensor:
        """Nearest point of the ε-ball (ε one number or one per example)."""
        raise self._undefined("ε-ball projection")

    def steepest(self, g: torch.Tensor) -> torch.Tensor:
        """Unit-norm steepest-ascent direction for gradient ``g``: argmax_{‖s‖≤1} ⟨g, s⟩."""
        raise self._undefined("steepest-ascent direction")

    def random(
        self, like: torch.Tensor, eps: Scale, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A random point of the ε-ball shaped like ``like`` (uniform where said)."""
        raise self._undefined("random start")

    def prox(
        self,
        u: torch.Tensor,
        mu: Scale,
        metric: torch.Tensor | None = None,
        box: Box | None = None,
    ) -> torch.Tensor:
        """argmin_z μ‖z‖ + ½ Σ d_i (z_i − u_i)² per example (d ≡ 1 without ``metric``),
        then clipped into ``box`` (lo ≤ z ≤ hi; for an image x in [0, 1], (−x, 1 − x)).
        Clipping afterwards is exact for the separable convex l1 and close for l2 and l∞; the
        l0 norms, where it is not, take the box into the threshold itself."""
        z = self._prox(u, mu, metric)
        return z if box is None else z.clamp(box[0], box[1])

    def _prox(self, u: torch.Tensor, mu: Scale, metric: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _undefined(self, what: str) -> ConfigError:
        return ConfigError(f"the {self.name} norm has no {what}")

    def __repr__(self) -> str:
        return f"Norm({self.name!r})"


class Linf(Norm):
    name = "linf"

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        flat = r.flatten(1)
        return flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(len(flat))

    def dual(self, w: torch.Tensor) -> torch.Tensor:
        return w.norm(p=1, dim=-1)

    def project(self, r: torch.Tensor, eps: Scale) -> torch.Tensor:
        bound = _batch_scale(eps, r)
        return torch.maximum(torch.minimum(r, bound), -bound)

    def steepest(self, g: torch.Tensor) -> torch.Tensor:
        return g.sign()

    def random(
        self, like: torch.Tensor, eps: Scale, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform in the cube: U(−ε, ε) per entry (methods.md §4.1)."""
        u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return (2 * u - 1) * _batch_scale(eps, like)

    def _prox(self, u: torch.Tensor, mu: Scale, metric: torch.Tensor | None) -> torch.Tensor:
        return prox_linf(u, mu, metric)


class L2(Norm):
    name = "l2"

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return r.flatten(1).norm(p=2, dim=1)

    def dual(self, w: torch.Tensor) -> torch.Tensor:
        return w.norm(p=2, dim=-1)

    def project(self, r: torch.Tensor, eps: Scale) -> torch.Tensor:
        norms = self.distance(r)
        bound = torch.as_tensor(eps, device=r.device, dtype=r.dtype).expand_as(norms)
        factor = torch.where(norms > bound, bound / norms.clamp_min(_TINY), torch.ones_like(norms))
        return r * per_example(factor, r)

    def steepest(self, g: torch.Tensor) -> torch.Tensor:
        """g/‖g‖₂, and 0 where g = 0 (also the gradient of ‖g‖₂, guarded at 0)."""
        return g / per_example(self.distance(g).clamp_min(_TINY), g)

    def random(
        self, like: torch.Tensor, eps: Scale, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform in the ball: a gaussian direction, radius ε·U^(1/d)."""
        d = like[0].numel()
        direction = torch.randn(
            like.shape, generator=generator, device=like.device, dtype=like.dtype
        )
        direction = self.steepest(direction)
        u = torch.rand(len(like), generator=generator, device=like.device, dtype=like.dtype)
        radius = torch.as_tensor(eps, device=like.device, dtype=like.dtype) * u ** (1.0 / d)
        return direction * per_example(radius.expand(len(like)), like)

    def _prox(self, u: torch.Tensor, mu: Scale, metric: torch.Tensor | None) -> torch.Tensor:
        return prox_l2(u, mu, metric)


class L1(Norm):
    name = "l1"

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return r.flatten(1).abs().sum(1)

    def dual(self, w: torch.Tensor) -> torch.Tensor:
        return w.abs().amax(-1)

    def project(self, r: torch.Tensor, eps: Scale) -> torch.Tensor:
        radius = torch.as_tensor(eps, device=r.device, dtype=r.dtype).expand(len(r))
        return project_l1_ball(r, radius)

    def steepest(self, g: torch.Tensor) -> torch.Tensor:
        """±1 on the largest |g_i| (ties to the lower index), 0 elsewhere."""
        flat = g.flatten(1)
        top = flat.abs().argmax(1, keepdim=True)
        return torch.zeros_like(flat).scatter_(1, top, flat.gather(1, top).sign()).view_as(g)

    def random(
        self, like: torch.Tensor, eps: Scale, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform in the ball: d+1 exponentials normalised by their sum are uniform on the
        corner simplex {w ≥ 0, Σw ≤ 1}; random signs then fill the l1 ball."""
        flat = like.flatten(1)
        n, d = flat.shape
        e = torch.empty(n, d + 1, device=like.device, dtype=like.dtype)
        e.exponential_(generator=generator)
        w = e[:, :d] / e.sum(1, keepdim=True)
        coin = torch.rand(n, d, generator=generator, device=like.device, dtype=like.dtype)
        signed = torch.where(coin < 0.5, -w, w).view_as(like)
        return signed * _batch_scale(eps, like)

    def _prox(self, u: torch.Tensor, mu: Scale, metric: torch.Tensor | None) -> torch.Tensor:
        return prox_l1(u, mu, metric)


class L0(Norm):
    """The number of non-zero entries (not a norm; projection and prox are still exact)."""

    name = "l0"

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return (r.flatten(1) != 0).sum(1).to(r.dtype)

    def project(self, r: torch.Tensor, eps: Scale) -> torch.Tensor:
        """Keep the ⌊ε⌋ largest |r_i| of each example (the nearest point in l2)."""
        flat = r.flatten(1)
        keep = _keep_largest(flat.abs(), _counts(eps, r))
        return torch.where(keep, flat, torch.zeros_like(flat)).view_as(r)

    def prox(
        self,
        u: torch.Tensor,
        mu: Scale,
        metric: torch.Tensor | None = None,
        box: Box | None = None,
    ) -> torch.Tensor:
        return prox_l0(u, mu, metric, box)


class L0Pixel(Norm):
    """The number of modified pixels of an N×C×H×W batch, whatever their channels (§5.3.4)."""

    name = "l0_pixel"

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return pixel_l0(r)

    def project(self, r: torch.Tensor, eps: Scale) -> torch.Tensor:
        """Keep the ⌊ε⌋ pixels with the largest max_c |r_c| (all their channels)."""
        scores = r.abs().amax(1).flatten(1)
        keep = _keep_largest(scores, _counts(eps, r)).view(len(r), 1, *r.shape[2:])
        return torch.where(keep, r, torch.zeros_like(r))

    def prox(
        self,
        u: torch.Tensor,
        mu: Scale,
        metric: torch.Tensor | None = None,
        box: Box | None = None,
    ) -> torch.Tensor:
        return prox_group_l0(u, mu, metric, box)


NORM_OBJECTS: dict[str, Norm] = {n.name: n for n in (Linf(), L2(), L1(), L0(), L0Pixel())}


def norm(name: str) -> Norm:
    """The norm object called ``name`` (one of :data:`NORMS`)."""
    try:
        return NORM_OBJECTS[name]
    except KeyError:
        raise ConfigError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}") from None


def get(name: str) -> Norm:
    """The norm object for projected-gradient attacks: one of :data:`PROJECTED`."""
    if name not in PROJECTED:
        raise ConfigError(f"projected attacks support {', '.join(PROJECTED)}, not {name!r}")
    return NORM_OBJECTS[name]


def lp_norm(r: torch.Tensor, name: str) -> torch.Tensor:
    """Per-example ‖r‖ in the norm called ``name``: ``norm(name).distance(r)``."""
    return norm(name).distance(r)


def pixel_l0(r: torch.Tensor) -> torch.Tensor:
    """Number of modified pixels (a pixel counts once, whatever its channels): chapter 5.3.4."""
    return (r.abs().amax(1) != 0).flatten(1).sum(1).to(r.dtype)


# ------------------------------------------------------------------ proximal operators
# Each works per example on N×…, takes μ as a float or an (N,) tensor (μ > 0) and an optional
# diagonal metric d > 0 shaped like u (PDPGD with Adam, the authors' later code); it then returns
# argmin_z μ‖z‖ + ½ Σ d_i (z_i − u_i)², the plain prox when d ≡ 1. l1 and l0 are separable
# (thresholds μ/d_i and sqrt(2μ/d_i)); l∞ clips at the t with Σ d_i (|u_i| − t)₊ = μ, found
# exactly by one sort; l2 shrinks z_i = d_i u_i / (d_i + c) with c = μ/‖z‖₂ found by bisection
# (closed form when d is uniform). The l1-ball projection sorts once (O(n log n) per example).


def _positive(value: Scale, like: torch.Tensor, what: str) -> torch.Tensor:
    """``value`` (a float > 0 or an (N,) tensor) as a tensor broadcastable against ``like``."""
    if not isinstance(value, torch.Tensor):
        if not value > 0:
            raise ValueError(f"{what} must be positive, got {value}")
        full = torch.full((len(like),), float(value), device=like.device, dtype=like.dtype)
        return per_example(full, like)
    value = value.to(device=like.device, dtype=like.dtype)
    if value.dim() == 0:
        value = value.expand(len(like))
    if value.shape != (len(like),):
        raise ValueError(f"{what} must be a float or a tensor of shape ({len(like)},)")
    return per_example(value, like)


def _check_metric(metric: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if metric is None:
        return None
    if metric.shape != like.shape:
        raise ValueError(f"metric must be shaped like u {tuple(like.shape)}")
    return metric.to(device=like.device, dtype=like.dtype)


def prox_l2(u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None) -> torch.Tensor:
    """prox of μ‖·‖₂: block soft threshold u·max(0, 1 − μ/‖u‖₂) (eq. 5.12); 0 stays 0."""
    mu = _positive(mu, u, "mu")
    d = _check_metric(metric, u)
    if d is None:
        norms = u.flatten(1).norm(p=2, dim=1).view_as(mu)
        return u * (1 - mu / norms.clamp_min(_PROX_TINY)).clamp_min(0)
    # z = 0 iff ‖d∘u‖₂ ≤ μ; else z_i = d_i u_i/(d_i + c) where ψ(c) = c‖d∘u/(d + c)‖₂ = μ,
    # ψ increasing, bracketed by c ∈ μ/(‖d∘u‖ − μ)·[min d, max d]; geometric bisection.
    du = d * u
    size = du.flatten(1).norm(dim=1).view_as(mu)
    active = size > mu
    base = mu / (size - mu).clamp_min(_PROX_TINY)
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
    mu = _positive(mu, u, "mu")
    d = _check_metric(metric, u)
    threshold = mu if d is None else mu / d
    return u.sign() * (u.abs() - threshold).clamp_min(0)


def project_simplex(v: torch.Tensor, radius: Scale = 1.0) -> torch.Tensor:
    """Euclidean projection of each v ≥ 0 onto {w ≥ 0, Σw = radius} (Duchi et al. 2008).

    Sort descending, cumulative sums, the last index ρ with u_ρ > (Σ_{i≤ρ} u_i − radius)/ρ gives
    θ = (Σ_{i≤ρ} u_i − radius)/ρ, and the projection is max(v − θ, 0).
    """
    radius = _positive(radius, v, "radius").view(-1, 1)
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
    r = _positive(radius, v, "radius")
    inside = v.flatten(1).abs().sum(dim=1).view_as(r) <= r
    projected = v.sign() * project_simplex(v.abs(), r.flatten())
    return torch.where(inside, v, projected)


def prox_linf(u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None) -> torch.Tensor:
    """prox of μ‖·‖∞ by Moreau decomposition: u − μ·P_{‖·‖₁≤1}(u/μ) (eq. 5.11).

    Computed as u − P_{‖·‖₁≤μ}(u), the same point (μ·P_B(u/μ) = P_{μB}(u)) without dividing by
    a possibly tiny μ. With a metric d: sign(u)·min(|u|, t), t ≥ 0 the root of
    Σ d_i (|u_i| − t)₊ = μ (sort |u| descending; the weighted analogue of Duchi's threshold).
    """
    mu = _positive(mu, u, "mu")
    d = _check_metric(metric, u)
    if d is None:
        return u - project_l1_ball(u, mu.flatten())
    a, order = u.abs().flatten(1).sort(dim=1, descending=True)
    w = d.flatten(1).gather(1, order)
    cum_w = w.cumsum(1)
    t_k = ((w * a).cumsum(1) - mu.view(-1, 1)) / cum_w.clamp_min(_PROX_TINY)
    k = torch.arange(1, a.shape[1] + 1, device=u.device)
    rho = torch.where(a > t_k, k, torch.zeros_like(k)).amax(1, keepdim=True).clamp_min(1)
    t = t_k.gather(1, rho - 1).clamp_min(0).view_as(mu)
    return u.sign() * torch.minimum(u.abs(), t)


def prox_l0(
    u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None, box: Box | None = None
) -> torch.Tensor:
    """prox of μ‖·‖₀: hard threshold, keep u_i where |u_i| > sqrt(2μ) (eq. 5.14); with a
    metric d, where sqrt(d_i)·|u_i| > sqrt(2μ).

    With a ``box`` (lo, hi) the prox of μ‖·‖₀ plus the box's indicator, which is not the
    threshold clipped afterwards: an entry kept costs μ + ½d(c − u)² with c = clip(u), one
    dropped ½d·u², so it is kept where d(u² − (u − c)²) > 2μ. A pixel already at 0 or 1 that
    the step pushes outward is then never counted, however large the push."""
    mu = _positive(mu, u, "mu")
    return torch.where(_l0_gain(u, metric, box) > 2 * mu, _clip(u, box), torch.zeros_like(u))


def _clip(u: torch.Tensor, box: Box | None) -> torch.Tensor:
    return u if box is None else u.clamp(box[0], box[1])


def _l0_gain(u: torch.Tensor, metric: torch.Tensor | None, box: Box | None) -> torch.Tensor:
    """Per entry, what keeping u_i (clipped into the box) saves over dropping it: d(u² − (u−c)²)."""
    d = _check_metric(metric, u)
    gain = u.square() if box is None else u.square() - (u - _clip(u, box)).square()
    return gain if d is None else gain * d


def prox_group_l0(
    u: torch.Tensor, mu: Scale, metric: torch.Tensor | None = None, box: Box | None = None
) -> torch.Tensor:
    """prox of μ·(number of modified pixels) for N×C×H×W: a pixel's channels are kept together
    when its largest |u| exceeds sqrt(2μ), else all zeroed (group hard threshold, eq. 5.16);
    with a metric d, when its largest sqrt(d_c)·|u_c| exceeds sqrt(2μ); with a ``box``, when
    its largest d_c(u_c² − (u_c − clip(u_c))²) exceeds 2μ, as :func:`prox_l0`."""
    if u.dim() != 4:
        raise ValueError(f"prox_group_l0 expects N×C×H×W, got shape {tuple(u.shape)}")
    mu = _positive(mu, u, "mu")
    keep = _l0_gain(u, metric, box).amax(dim=1, keepdim=True) > 2 * mu
    return torch.where(keep, _clip(u, box), torch.zeros_like(u))
