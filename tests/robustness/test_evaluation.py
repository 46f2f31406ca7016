"""Metric definitions on hand-made attack results (methods.md §6)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch

from robustness import evaluation
from robustness.attacks.base import Attack, make_result


def result_for(x: torch.Tensor, r: torch.Tensor, success: list[bool], norm: str = "l2"):
    n = len(x)
    return make_result(x, x + r, torch.tensor(success), norm, torch.ones(n), torch.full((n,), 2))


def test_rho_over_correct_points_and_rho_all_with_zeros():
    x = torch.full((4, 1, 2, 2), 0.5)  # ‖x‖₂ = 1
    r = torch.zeros_like(x)
    r[:, 0, 0, 0] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    result = result_for(x, r, [True, True, True, False])
    correct = torch.tensor([True, True, False, True])
    out = evaluation.average_robustness(x, result, correct)
    assert out["rho"] == pytest.approx((0.1 + 0.2) / 2)
    assert out["rho_all"] == pytest.approx((0.1 + 0.2) / 4)
    assert out["success_rate"] == pytest.approx(2 / 3)
    assert (out["attacked"], out["failed"]) == (3, 1)


def test_min_norm_summary_counts_robust_accuracy_at_thresholds():
    x = torch.full((5, 1, 1, 4), 0.5)
    r = torch.zeros_like(x)
    r[:, 0, 0, 0] = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.0])
    result = result_for(x, r, [True, True, True, False, True], norm="linf")
    correct = torch.tensor([True, True, True, True, False])
    out = evaluation.min_norm_summary(result, correct, thresholds=[0.05, 0.15, 0.5])
    # correct & not broken at eps: eps .05 -> {1,2,3}; .15 -> {2,3}; .5 -> {3}
    assert out["robust_accuracy"] == {"0.05": 0.6, "0.15": 0.4, "0.5": 0.2}
    assert out["mean_norm"] == pytest.approx((0.05 + 0.1 + 0.2) / 3)
    assert out["median_norm"] == pytest.approx(0.1)
    assert out["success_rate"] == pytest.approx(3 / 4)
    assert out["grad_evals_per_example"] == 2


def test_default_thresholds_come_from_the_norm():
    x = torch.full((2, 1, 1, 2), 0.5)
    result = result_for(x, torch.zeros_like(x), [False, False], norm="l1")
    out = evaluation.min_norm_summary(result, torch.tensor([True, True]))
    assert list(out["robust_accuracy"]) == ["2.5", "5", "7.5", "10", "12.5"]
    assert set(out["robust_accuracy"].values()) == {1.0}
    assert out["mean_norm"] is None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Identity(Attack):
    """Returns its input; records the seed each chunk ran with."""

    name: ClassVar[str] = "identity"
    norm: ClassVar[str] = "l2"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    seed: int | None = 0

    def perturb(self, model, x, y, chunk, target=None):
        assert len(x) <= self.chunk_size and (target is None or len(target) == len(x))
        chunk.extras.update(target=target, seed=torch.full((len(x),), chunk.seed))
        return x


def test_run_attack_chunks_and_reports_progress():
    seen = []
    x, y = torch.rand(7, 1, 2, 2), torch.zeros(7, dtype=torch.long)
    out = evaluation.run_attack(
        Identity(chunk_size=3),
        torch.nn.Flatten(),
        x,
        y,
        target=torch.arange(7),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(0, 7), (3, 7), (6, 7), (7, 7)]  # the start, then each chunk
    assert torch.equal(out.result.x_adv, x)
    assert torch.equal(out.result.extras["target"], torch.arange(7))
    assert out.result.extras["seed"].tolist() == [0, 0, 0, 3, 3, 3, 6]  # seed + chunk start
    assert out.seconds >= 0


def test_error_rate_rejects_empty_input():
    with pytest.raises(ValueError):
        evaluation.error_rate(torch.nn.Identity(), torch.zeros(0, 10), torch.zeros(0))
