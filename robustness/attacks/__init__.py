"""Attack registry: every attack of the thesis by name, built from validated parameters.

Each attack lives in its own module; ``build(name, **params)`` returns a configured instance
and ``attack(model, x, y)`` returns an :class:`AttackResult`.
"""

from __future__ import annotations

from typing import Any

from robustness.attacks.base import Attack, AttackResult
from robustness.errors import ConfigError
from robustness.plugins import build_params, lookup

# name -> "module:Class" (imported on first use so one broken attack cannot break the rest)
ATTACKS: dict[str, str] = {
    "fgsm": "robustness.attacks.fgsm:FGSM",
    "pgd": "robustness.attacks.pgd:PGD",
    "deepfool": "robustness.attacks.deepfool:DeepFool",
    "cw": "robustness.attacks.cw:CarliniWagnerL2",
    "hc": "robustness.attacks.high_confidence:HighConfidence",
    "pdgd": "robustness.attacks.pdpgd:PDGD",
    "pdpgd": "robustness.attacks.pdpgd:PDPGD",
}

__all__ = ["ATTACKS", "Attack", "AttackResult", "build", "get_class", "names"]


def names() -> list[str]:
    return list(ATTACKS)


def get_class(name: str) -> type[Attack]:
    return lookup(ATTACKS, name, "attack")


def build(name: str, **params: Any) -> Attack:
    """An attack by registry name; unknown or malformed parameters are a ValueError."""
    cls = get_class(name)
    values = build_params(cls, params, f"attack {name!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"attack {name!r}: {exc}") from None
