"""Small trained models shared by the attack tests (built once per session, then cached)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness import data, nets

Trained = tuple[nn.Module, torch.Tensor, torch.Tensor]


def small_mlp(hidden: int = 64, dropout: float = 0.0) -> nn.Module:
    """784 → hidden → 10 with optional dropout: cheap enough for attack unit tests."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, 10),
    )


@cache
def _trained_mlp(n_test: int) -> Trained:
    ds = data.synthetic(n_train=256, n_valid=0, n_test=n_test)
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = small_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(100):
        batch = torch.randint(0, len(ds.train), (64,), generator=gen)
        loss = F.cross_entropy(model(ds.train.x[batch]), ds.train.y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    x, y = ds.test.x, ds.test.y
    assert (model(x).argmax(1) == y).all()
    return model, x, y


@cache
def _trained_lenet5(n_test: int) -> Trained:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ds = data.synthetic(n_train=512, n_test=n_test, seed=0)
        model = nets.build("lenet5")
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for _ in range(2):
            for i in range(0, 512, 64):
                loss = F.cross_entropy(model(ds.train.x[i : i + 64]), ds.train.y[i : i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, ds.test.x, ds.test.y


@pytest.fixture(scope="session")
def trained_mlp() -> Callable[[int], Trained]:
    """Factory: a small MLP trained 100 Adam steps on synthetic digits, with n test images."""
    return _trained_mlp


@pytest.fixture(scope="session")
def trained_lenet5() -> Callable[[int], Trained]:
    """Factory: a LeNet-5 trained two epochs on 512 synthetic digits, with n test images."""
    return _trained_lenet5


@pytest.fixture(scope="session")
def make_mlp() -> Callable[..., nn.Module]:
    return small_mlp
