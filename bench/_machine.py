"""A description of the machine a benchmark ran on, stored beside its numbers."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

import torch

from robustness import runtime


def machine(device: torch.device) -> dict:
    """CPU model, cores, threads, GPU and library versions."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": runtime.describe_device(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    return info


def write_report(path: Path, device: torch.device, report: dict) -> None:
    """Write ``report`` as JSON to ``path``, stamped with the time and the machine."""
    stamped = {
        **report,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(device),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"wrote {path}")
