"""The thesis's networks, by name (methods.md section 2).

Plain PyTorch; this module must never import Django. Every network takes images in [0, 1]
shaped N×C×H×W and returns logits shaped N×k. Build one with ``build("lenet5", dropout=0.5)``;
the model then carries ``model.blindspot_config``, the exact keyword arguments (defaults
included) that rebuild it: ``build(**model.blindspot_config)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from robustness.errors import ConfigError

__all__ = [
    "INITS",
    "NETWORKS",
    "GaussianNoise",
    "build",
    "count_parameters",
    "init_weights",
    "names",
    "register",
]

INITS = ("torch", "truncnormal", "glorot")

NETWORKS: dict[str, Callable[..., nn.Module]] = {}

MNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a network builder to NETWORKS under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in NETWORKS:
            raise ConfigError(f"network {name!r} is already registered")
        NETWORKS[name] = fn
        return fn

    return deco


def names() -> list[str]:
    """The registered network names, sorted."""
    return sorted(NETWORKS)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def init_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear/Conv2d of ``model`` in place.

    ``torch``: keep PyTorch's default; ``truncnormal`` (chapter 4 code): normal with
    std = sqrt(2.6 / fan_in) truncated at ±2σ, zero biases; ``glorot`` (chapter 3 code):
    Glorot/Xavier uniform, zero biases.
    """
    if scheme not in INITS:
        raise ConfigError(f"unknown init scheme {scheme!r}; choose one of: {', '.join(INITS)}")
    if scheme == "torch":
        return
    for m in model.modules():
        if not isinstance(m, nn.Linear | nn.Conv2d):
            continue
        with torch.no_grad():
            if scheme == "truncnormal":
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                std = math.sqrt(2.6 / fan_in)
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build(name: str | None = None, *, arch: str | None = None, **kw) -> nn.Module:
    """Build network ``name`` with keyword arguments ``kw``.

    Raises ValueError for an unknown name or keyword argument. The returned model carries
    ``blindspot_config = {"arch": name, **all_kwargs_with_defaults}``; ``arch`` is accepted as
    an alias of ``name`` so that ``build(**model.blindspot_config)`` rebuilds the model.
    """
    if name is None:
        name = arch
    elif arch is not None and arch != name:
        raise ConfigError(f"conflicting network names: name={name!r}, arch={arch!r}")
    if name is None:
        raise ConfigError(f"no network named; choose one of: {', '.join(names())}")
    if name not in NETWORKS:
        raise ConfigError(f"unknown network {name!r}; choose one of: {', '.join(names())}")
    fn = NETWORKS[name]
    sig = inspect.signature(fn)
    unknown = [k for k in kw if k not in sig.parameters]
    if unknown:
        raise ConfigError(
            f"unknown argument(s) {', '.join(map(repr, unknown))} for network {name!r}; "
            f"it accepts: {', '.join(sig.parameters)}"
        )
    try:
        bound = sig.bind(**kw)
    except TypeError as e:
        raise ConfigError(f"bad arguments for network {name!r}: {e}") from e
    bound.apply_defaults()
    config = dict(bound.arguments)
    if "in_shape" in config:
        config["in_shape"] = _shape(config["in_shape"])
    model = fn(**config)
    # nn.Module.__setattr__ is typed for tensors and submodules only; any value works at runtime.
    model.blindspot_config = {"arch": name, **config}  # type: ignore[assignment]
    return model


# --------------------------------------------------------------------------- helpers


def _shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape!r}")
    return shape


def _check(num_classes: int, dropout: float, init: str) -> None:
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if init not in INITS:
        raise ConfigError(f"unknown init scheme {init!r}; choose one of: {', '.join(INITS)}")


def _drop(p: float) -> nn.Module:
    # Identity when p == 0 keeps the Sequential indices (state_dict keys) independent of p.
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _finish(model: nn.Module, init: str) -> nn.Module:
    init_weights(model, init)
    return model


class GaussianNoise(nn.Module):
    """Adds N(0, std²) noise on every forward pass, training and evaluation alike (ch. 4)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ConfigError(f"noise std must be >= 0, got {std!r}")
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return x
        return x + torch.randn_like(x) * self.std

    def extra_repr(self) -> str:
        return f"std={self.std}"


# --------------------------------------------------------------------------- networks


def _mlp(in_shape, num_classes, dropout, init, width: int, depth: int = 3) -> nn.Module:
    _check(num_classes, dropout, init)
    c, h, w = _shape(in_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = c * h * w
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU(), _drop(dropout)]
        n_in = width
    layers.append(nn.Linear(n_in, num_classes))
    return _finish(nn.Sequential(*layers), init)


@register("mlp1000")
def mlp1000(
    in_shape: tuple[int, int, int] = MNIST_SHAPE,
    num_classes: int = 10,
    dropout: float = 0.0,
    init: str = "torch",
) -> nn.Module:
    """Chapter 3 MLP: 784 → 1000 → 1000 → 1000 → 10, ReLU."""
    return _mlp(in_shape, num_classes, dropout, init, width=1000)


@register("mlp1200")
def mlp1200(
    in_shape: tuple[int, int, int] = MNIST_SHAPE,
    num_classes: int = 10,
    dropout: float = 0.0,
    init: str = "torch",
) -> nn.Module:
    """Chapter 4 MLP: 784 → 1200 → 1200 → 1200 → 10, ReLU."""
    return _mlp(in_shape, num_classes, dropout, init, width=1200)


def _convnet(in_shape, num_classes, dropout, init, padding: int, hidden: int) -> nn.Module:
    _check(num_classes, dropout, init)
    c, h, w = _shape(in_shape)
    for _ in range(2):  # conv 5×5 then maxpool 2 (floor), twice
        h, w = (h + 2 * padding - 4) // 2, (w + 2 * padding - 4) // 2
        if h < 1 or w < 1:
            raise ConfigError(f"in_shape {in_shape!r} is too small for this network")
    model = nn.Sequential(
        nn.Conv2d(c, 32, 5, padding=padding),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=padding),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        _drop(dropout),
        nn.Linear(64 * h * w, hidden),
        nn.ReLU(),
        _drop(dropout),
        nn.Linear(hidden, num_classes),
    )
    return _finish(model, init)


@register("lenet5")
def lenet5(
    in_shape: tuple[int, int, int] = MNIST_SHAPE,
    num_classes: int = 10,
    dropout: float = 0.0,
    init: str = "torch",
) -> nn.Module:
    """Chapters 3 and 4 LeNet-5: conv5×5 32 → pool → conv5×5 64 → pool → fc 512 → fc k."""
    return _convnet(in_shape, num_classes, dropout, init, padding=0, hidden=512)


@register("madry_cnn")
def madry_cnn(
    in_shape: tuple[int, int, int] = MNIST_SHAPE,
    num_classes: int = 10,
    dropout: float = 0.0,
    init: str = "torch",
) -> nn.Module:
    """Chapter 5 Madry et al. CNN: same-padded conv 32 / conv 64, fc 1024 → fc k."""
    return _convnet(in_shape, num_classes, dropout, init, padding=2, hidden=1024)


def _conv_relu(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU()]


@register("nin")
def nin(
    in_shape: tuple[int, int, int] = CIFAR_SHAPE,
    num_classes: int = 10,
    dropout: float = 0.5,
    init: str = "torch",
) -> nn.Module:
    """Chapter 3 Network-in-Network (Lin et al. 2014) for CIFAR-10."""
    _check(num_classes, dropout, init)
    c, _, _ = _shape(in_shape)
    model = nn.Sequential(
        # block 1
        *_conv_relu(c, 192, 5),
        *_conv_relu(192, 160, 1),
        *_conv_relu(160, 96, 1),
        nn.MaxPool2d(3, stride=2, padding=1),
        _drop(dropout),
        # block 2
        *_conv_relu(96, 192, 5),
        *_conv_relu(192, 192, 1),
        *_conv_relu(192, 192, 1),
        nn.AvgPool2d(3, stride=2, padding=1),
        _drop(dropout),
        # block 3
        *_conv_relu(192, 192, 3),
        *_conv_relu(192, 192, 1),
        nn.Conv2d(192, num_classes, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return _finish(model, init)


@register("critic")
def critic(
    in_shape: tuple[int, int, int] = MNIST_SHAPE,
    num_classes: int = 10,
    init: str = "torch",
    input_noise: float = 0.1,
    hidden_noise: float = 0.5,
) -> nn.Module:
    """Chapter 4 adversary critic; output k is a real-vs-adversarial logit for class k."""
    _check(num_classes, 0.0, init)
    c, h, w = _shape(in_shape)
    model = nn.Sequential(
        nn.Flatten(),
        GaussianNoise(input_noise),
        nn.Linear(c * h * w, 1200),
        nn.LeakyReLU(0.2),
        GaussianNoise(hidden_noise),
        nn.Linear(1200, 1200),
        nn.LeakyReLU(0.2),
        GaussianNoise(hidden_noise),
        nn.Linear(1200, num_classes),
    )
    return _finish(model, init)
