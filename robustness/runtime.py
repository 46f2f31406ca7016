"""Where and how numeric code runs: device choice, seeds, determinism.

The device is decided once at an entry point (command, service, notebook) and passed down;
library code takes it from its tensors.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from robustness.errors import BlindspotError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
_CUBLAS = "CUBLAS_WORKSPACE_CONFIG"


class DeviceError(BlindspotError, RuntimeError):
    """A requested device is not available on this machine."""

    code, status = "device_unavailable", 503


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` (None: ``auto``) into a device.

    ``auto`` means CUDA when available, else CPU. Asking for CUDA where there is none is an
    error rather than a silent fall-back, so a benchmark never reports CPU numbers as GPU ones.
    The entry point decides (a command's ``--device``, the Django setting ``BLINDSPOT_DEVICE``);
    the library reads no environment variable.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {spec!r} requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {spec!r}; use auto, cpu or cuda[:N]")
    return device


@contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Deterministic kernels inside the block, so a resumed run ends bit-identical to an
    uninterrupted one; on exit every setting it touched is as it was before.

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use; it is set for the block
    (harmless on the CPU) unless the caller set it already.
    """
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    workspace = os.environ.get(_CUBLAS)
    if enabled and workspace is None:
        os.environ[_CUBLAS] = ":4096:8"
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        algorithms, warn_only, cudnn_deterministic, cudnn_benchmark = before
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_deterministic
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if workspace is None:
            os.environ.pop(_CUBLAS, None)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global random state a training step may consume, for checkpoints."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def describe_device(device: torch.device) -> str:
    """A human description, e.g. 'cpu (2 threads)' or 'cuda:0 (NVIDIA H100)'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
