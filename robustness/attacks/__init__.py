"""Attack registry: every attack of the thesis by name, built from validated parameters.

Each attack lives in its own module; ``build(name, **params)`` returns a configured instance
and ``attack(model, x, y)`` returns an :class:`AttackResult`. Every attack class declares the
norms it supports (``norms``); ``build`` accepts ``norm`` for each of them, also where the norm
is fixed (``build("pdgd", norm="l2")``), and refuses any other in one line.
"""

from __future__ import annotations

import dataclasses
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

__all__ = ["ATTACKS", "Attack", "AttackResult", "build", "check_norm", "get_class", "names"]


def names() -> list[str]:
    return list(ATTACKS)


def get_class(name: str) -> type[Attack]:
    return lookup(ATTACKS, name, "attack")


def build(name: str, **params: Any) -> Attack:
    """An attack by registry name; unknown or malformed parameters are a ValueError."""
    cls = get_class(name)
    if "norm" in params:
        check_norm(cls, params["norm"])
        if "norm" not in {f.name for f in dataclasses.fields(cls)}:
            params = {k: v for k, v in params.items() if k != "norm"}  # fixed: nothing to set
    values = build_params(cls, params, f"attack {name!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"attack {name!r}: {exc}") from None


def check_norm(cls: type[Attack], norm: str) -> None:
    """Refuse a norm the attack class does not support, naming those it does."""
    if norm not in cls.norms:
        supported = ", ".join(cls.norms)
        kind = "norms" if len(cls.norms) > 1 else "norm"
        raise ConfigError(f"attack {cls.name!r} supports the {kind} {supported}, not {norm!r}")
