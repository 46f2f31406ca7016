"""What `evaluate` and `attack` share: finding the model, progress bars, JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError
from tqdm import tqdm

from robustness.models import TrainedModel
from robustness.selectors import model_get


def registered_model(name: str) -> TrainedModel:
    row = model_get(name=name)
    if row is None:
        raise CommandError(f"no model named {name!r}; see manage.py models")
    if row.status != TrainedModel.Status.DONE:
        raise CommandError(
            f"model {name!r} is {row.status}, not done; finish it with "
            f"manage.py train --name {name} --resume"
        )
    return row


class ChunkBar:
    """A tqdm bar fed by (done, total) progress callbacks."""

    def __init__(self, desc: str, disable: bool) -> None:
        self.bar: tqdm | None = None
        self.desc = desc
        self.disable = disable

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="img", disable=self.disable)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
