"""Dropout baseline (chapter 3): p = 0.5 after each hidden layer, cross-entropy loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robustness.defenses.none import NoDefense
from robustness.errors import ConfigError


@dataclass(frozen=True)
class DropoutParams:
    p: float = 0.5  # thesis §3.5: dropout rate of the chapter 3 baselines

    def __post_init__(self) -> None:
        if not 0.0 < self.p < 1.0:
            raise ConfigError(f"dropout p must be in (0, 1), got {self.p}")


class Dropout(NoDefense):
    name = "dropout"
    Params = DropoutParams

    def arch_kwargs(self) -> dict[str, Any]:
        return {"dropout": self.params.p}
