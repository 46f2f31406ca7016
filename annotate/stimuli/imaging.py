"""Pure imaging for stimuli: 8-bit quantisation, the PNG codec, controls, balanced picks.

No Django: everything here works on tensors and arrays. What a worker sees is an 8-bit PNG, so
every measurement runs on the quantised image (:class:`EightBit`, :func:`measure`).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from robustness.errors import ConfigError

CONTROL_KINDS = ("clean", "noise", "flipped")
EVAL_BATCH = 1000  # images per forward pass when only measuring
_BISECTION_STEPS = 50  # halvings of the noise scale: far below 8-bit resolution
_GROWTH_STEPS = 60  # doublings of the noise scale before a norm counts as out of reach


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] rounded to the 256 levels of an 8-bit PNG: round(x·255)/255."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as the 8-bit values a PNG stores: round(x·255), clamped first."""
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8)


def png_bytes(pixels: np.ndarray | torch.Tensor) -> bytes:
    """One C×H×W uint8 image as a PNG (grayscale for 1 channel, RGB for 3), no metadata chunks.

    Stored, not compressed (zlib level 0): every image of one shape is the same number of bytes,
    so the size of what a worker receives says nothing about its content or its condition.
    """
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.detach().cpu().numpy()
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(
            f"expected a uint8 1×H×W or 3×H×W image, got {pixels.dtype} {pixels.shape}"
        )
    array = pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def canonical_png(data: bytes) -> bytes:
    """Any PNG re-encoded as :func:`png_bytes` writes it (the same bytes for one it wrote)."""
    return png_bytes(png_pixels(data))


def png_pixels(data: bytes) -> np.ndarray:
    """Decode a PNG written by :func:`png_bytes` into a C×H×W uint8 array."""
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("L" if image.mode in ("L", "1", "P") else "RGB"))
    return np.ascontiguousarray(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def l2(x: torch.Tensor) -> torch.Tensor:
    """Per-image l2 norms of a batch."""
    return x.flatten(1).norm(dim=1)


def _per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


def noise_like(
    perturbation: torch.Tensor, *, clean: torch.Tensor, draws: torch.Tensor
) -> torch.Tensor:
    """Noise along ``draws`` with each perturbation's l2 norm, measured after clipping to the box.

    Returns n = clip(clean + s·d) − clean with ‖n‖₂ = ‖perturbation‖₂ per image (d: draws, unit).
    The clipped norm grows monotonically with s, so s is found by a batched bisection; where the
    box caps the norm below the goal, n is the farthest point of the box along d.
    """
    goal = l2(perturbation).to(clean.dtype)
    direction = draws / _per_image(l2(draws).clamp_min(1e-12), draws)

    def noise(scale: torch.Tensor) -> torch.Tensor:
        return (clean + _per_image(scale, clean) * direction).clamp(0, 1) - clean

    lo = torch.zeros_like(goal)
    hi = goal.clone()
    for _ in range(_GROWTH_STEPS):  # grow hi until it reaches the goal (or the box caps it)
        short = l2(noise(hi)) < goal
        if not short.any():
            break
        hi = torch.where(short, hi * 2, hi)
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        short = l2(noise(mid)) < goal
        lo = torch.where(short, mid, lo)
        hi = torch.where(short, hi, mid)
    return noise(hi)


def flip_perturbation(perturbation: torch.Tensor) -> torch.Tensor:
    """The perturbation flipped upside down: reversed along the height axis (N×C×H×W or C×H×W)."""
    return perturbation.flip(-2)


def balanced_pick(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` positions into ``labels``, classes as balanced as their sizes allow, seeded.

    Candidates are shuffled, ranked within their class and taken rank by rank (classes in a
    random order within a rank), so class counts differ by at most one until a class runs out.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    shuffled = labels[perm]
    order = np.argsort(shuffled, kind="stable")
    ordered = shuffled[order]
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.searchsorted(ordered, ordered, side="left")
    priority = rng.permutation(int(labels.max(initial=0)) + 1)[shuffled]
    pick = np.lexsort((priority, rank))[:count]
    return np.sort(perm[pick])


def control_images(
    kind: str, clean: torch.Tensor, adversarial: torch.Tensor, *, seed: int
) -> torch.Tensor:
    """The 8-bit images of one control kind, from 8-bit clean images and their attacks.

    ``noise`` draws every image's noise at once from a CPU generator seeded with ``seed``, so a
    resumed run draws the same noise.
    """
    perturbation = adversarial - clean
    if kind == "clean":
        return quantise(clean)
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randn(clean.shape, generator=gen, dtype=clean.dtype).to(clean.device)
        return quantise(clean + noise_like(perturbation, clean=clean, draws=draws))
    if kind == "flipped":
        return quantise(clean + flip_perturbation(perturbation))
    raise ConfigError(f"unknown control {kind}; choose from {', '.join(CONTROL_KINDS)}")


class EightBit(nn.Module):
    """``net`` seen through 8-bit quantisation: the forward pass runs on round(x·255)/255.

    Gradients pass straight through the rounding, so an attack on this wrapper steps as on
    ``net`` but stops only once the image a worker will see reaches its goal.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + (quantise(x) - x).detach())


@torch.no_grad()
def measure(
    net: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Prediction, max-softmax and p(target) of ``net`` on ``images`` (batched)."""
    probs = torch.cat(
        [net(images[i : i + EVAL_BATCH]).softmax(1) for i in range(0, len(images), EVAL_BATCH)]
    )
    confidence, pred = probs.max(1)
    p_target = None if targets is None else probs.gather(1, targets[:, None]).squeeze(1)
    return pred, confidence, p_target
