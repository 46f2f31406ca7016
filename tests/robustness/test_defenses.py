"""The defense registry and the two baseline defenses."""

from __future__ import annotations

import pytest
import torch

from robustness import defenses, nets


def test_registry_lists_the_baselines():
    assert {"none", "dropout"} <= set(defenses.names())


def test_unknown_defense_and_parameter_are_explained():
    with pytest.raises(ValueError, match="unknown defense 'magic'; choose one of"):
        defenses.build("magic")
    with pytest.raises(ValueError, match="has no parameter 'eps'"):
        defenses.build("dropout", {"eps": "0.1"})
    with pytest.raises(ValueError, match="not a valid float"):
        defenses.build("dropout", {"p": "half"})


def test_string_parameters_are_coerced_and_validated():
    assert defenses.build("dropout", {"p": "0.3"}).params.p == 0.3
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        defenses.build("dropout", {"p": "1.5"})


def test_dropout_changes_the_network_and_none_returns_cross_entropy():
    d = defenses.build("dropout")
    assert d.arch_kwargs() == {"dropout": 0.5}
    assert d.describe() == {"name": "dropout", "params": {"p": 0.5}}
    model = nets.build("lenet5", **d.arch_kwargs())
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())

    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    out = defenses.build("none").loss(model.eval(), x, y)
    expected = torch.nn.functional.cross_entropy(model(x), y)
    assert torch.allclose(out.loss, expected)
    assert out.logits.shape == (4, 10)
