"""Perturbation norms as small objects: distance, projection, steepest step, random start.

One projected-gradient loop serves every norm through these (foolbox's design). All
operations are per example over C×H×W, batched, and keep the device and dtype of their input.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from robustness.errors import ConfigError

NORMS = ("linf", "l2", "l1", "l0", "l0_pixel")
_TINY = 1e-12


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-example vector against a batch shaped like ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def lp_norm(r: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``r`` (N×…): linf, l2, l1, l0 (non-zero entries) or l0_pixel."""
    flat = r.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(len(flat))
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(1)
    if norm == "l0":
        return (flat != 0).sum(1).to(r.dtype)
    if norm == "l0_pixel":
        return pixel_l0(r)
    raise ConfigError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def pixel_l0(r: torch.Tensor) -> torch.Tensor:
    """Number of modified pixels (a pixel counts once, whatever its channels): chapter 5.3.4."""
    return (r.abs().amax(1) != 0).flatten(1).sum(1).to(r.dtype)


class Norm:
    """Interface of a threat model used by projected-gradient attacks."""

    name: ClassVar[str]

    def distance(self, r: torch.Tensor) -> torch.Tensor:
        return lp_norm(r, self.name)

    def project(self, r: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        """Nearest point of the ε-ball (per-example ε allowed)."""
        raise NotImplementedError

    def steepest(self, g: torch.Tensor) -> torch.Tensor:
        """Unit-norm steepest ascent direction for gradient ``g``."""
        raise NotImplementedError

    def random(
        self,
        like: torch.Tensor,
        eps: torch.Tensor | float,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A random point inside the ε-ball."""
        raise NotImplementedError


class Linf(Norm):
    name = "linf"

    def project(self, r, eps):
        eps = _as_batch(eps, r)
        return torch.maximum(torch.minimum(r, eps), -eps)

    def steepest(self, g):
        return g.sign()

    def random(self, like, eps, generator=None):
        u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return (2 * u - 1) * _as_batch(eps, like)


class L2(Norm):
    name = "l2"

    def project(self, r, eps):
        norms = lp_norm(r, "l2")
        eps = torch.as_tensor(eps, device=r.device, dtype=r.dtype).expand_as(norms)
        factor = torch.where(norms > eps, eps / norms.clamp_min(_TINY), torch.ones_like(norms))
        return r * _view(factor, r)

    def steepest(self, g):
        return g / _view(lp_norm(g, "l2").clamp_min(_TINY), g)

    def random(self, like, eps, generator=None):
        # Uniform in the ball: gaussian direction, radius ~ eps * U^(1/d).
        d = like[0].numel()
        direction = torch.randn(
            like.shape, generator=generator, device=like.device, dtype=like.dtype
        )
        direction = self.steepest(direction)
        u = torch.rand(len(like), generator=generator, device=like.device, dtype=like.dtype)
        radius = torch.as_tensor(eps, device=like.device, dtype=like.dtype) * u ** (1.0 / d)
        return direction * _view(radius.expand(len(like)), like)


NORM_OBJECTS: dict[str, Norm] = {"linf": Linf(), "l2": L2()}


def get(norm: str) -> Norm:
    """The norm object for projected-gradient attacks (linf or l2)."""
    try:
        return NORM_OBJECTS[norm]
    except KeyError:
        raise ConfigError(
            f"projected attacks support {', '.join(NORM_OBJECTS)}, not {norm!r}"
        ) from None


def _as_batch(eps: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    eps = torch.as_tensor(eps, device=like.device, dtype=like.dtype)
    return _view(eps, like) if eps.dim() == 1 else eps
