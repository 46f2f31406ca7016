"""Checkpoint files: atomic writes, safe loading, and a stable hash of the weights.

A checkpoint is a plain dict of tensors and primitives, loaded with ``weights_only=True`` so
opening a file never runs pickled code.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from robustness.errors import BlindspotError

FORMAT = "blindspot-checkpoint"
VERSION = 1


class CheckpointError(BlindspotError, RuntimeError):
    """A checkpoint file is missing, unreadable or not a Blindspot checkpoint."""

    code, status = "bad_checkpoint", 503


def save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A crash (even kill -9) leaves either the old checkpoint or the new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a Blindspot checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}, "
            f"this Blindspot reads version {VERSION}"
        )
    return payload


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names, dtypes, shapes and raw bytes, in key order.

    Independent of the pickle format and of the device, so equal weights hash equal anywhere.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
