"""Defense registry: ``build(name, params)`` returns a configured :class:`Defense`."""

from __future__ import annotations

from typing import Any

from robustness.defenses.base import BatchLoss, Defense
from robustness.plugins import build_params, lookup

# name -> "module:Class", imported on first use (one module per defense).
DEFENSES: dict[str, str] = {
    "none": "robustness.defenses.none:NoDefense",
    "dropout": "robustness.defenses.dropout:Dropout",
    "at": "robustness.defenses.at:AdversarialTraining",
    "vat": "robustness.defenses.vat:VirtualAdversarialTraining",
    "margin": "robustness.defenses.margin:MarginMaximization",
    "critic": "robustness.defenses.critic:AdversaryCritic",
    "pgd": "robustness.defenses.pgd:PGDTraining",
}

__all__ = ["DEFENSES", "BatchLoss", "Defense", "build", "get_class", "names", "parse_params"]


def names() -> list[str]:
    return list(DEFENSES)


def parse_params(name: str, params: dict[str, Any] | None) -> Any:
    """Validate ``params`` against the defense's dataclass; unknown keys are an error."""
    cls = _lookup(name)
    return cls.Params(**build_params(cls.Params, dict(params or {}), f"defense {name!r}"))


def build(name: str, params: dict[str, Any] | None = None) -> Defense:
    """A defense by registry name with validated hyper-parameters."""
    return _lookup(name)(parse_params(name, params))


def _lookup(name: str) -> type[Defense]:
    return lookup(DEFENSES, name, "defense")


def get_class(name: str) -> type[Defense]:
    """The defense class registered as ``name``."""
    return _lookup(name)
