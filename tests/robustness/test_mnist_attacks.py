"""Attacks on the real thing: LeNet-5 trained as in `make demo`, first MNIST test images."""

from __future__ import annotations

import pytest
import torch

from robustness import attacks, data
from robustness.training import TrainConfig, fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lenet5_on_mnist(tmp_path_factory):
    try:
        mnist = data.load_mnist(cache_dir=tmp_path_factory.mktemp("mnist"))
    except data.DataSourceError as exc:
        pytest.skip(f"no MNIST source: {exc}")
    config = TrainConfig.from_schedule("ch3", arch="lenet5", epochs=3, train_limit=20000)
    result = fit(
        config, mnist, device="cpu", checkpoint_path=tmp_path_factory.mktemp("run") / "c.pt"
    )
    return result.model, mnist.test.x[:1000], mnist.test.y[:1000]


def test_high_confidence_attack_reaches_the_original_confidence_on_99_percent(lenet5_on_mnist):
    model, x, y = lenet5_on_mnist
    result = attacks.build("hc")(model, x, y)  # closest target, confidence "original", 500 steps
    reached = result.extras["achieved"] >= result.extras["confidence"]
    assert reached.float().mean().item() >= 0.99
    assert result.success.float().mean().item() >= 0.99
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(
            model(result.x_adv).argmax(1)[result.success], result.extras["target"][result.success]
        )


def test_deepfool_fools_every_correct_digit_with_small_perturbations(lenet5_on_mnist):
    model, x, y = lenet5_on_mnist
    x, y = x[:300], y[:300]
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    result = attacks.build("deepfool", steps=50)(model, x, y)
    assert result.success[correct].all()
    mean = result.norms[correct].mean().item()
    assert 0.5 < mean < 3.0  # LeNet-5 on MNIST: DeepFool's mean l2 is about 1.6
