"""System checks of the settings the model registry reads."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from robustness import runtime


@register(Tags.compatibility)
def device_setting(app_configs: Any, **kwargs: Any) -> list[Error]:
    """``BLINDSPOT_DEVICE`` names a device this machine has."""
    try:
        runtime.resolve_device(settings.BLINDSPOT_DEVICE)
    except runtime.DeviceError as exc:
        return [
            Error(
                f"BLINDSPOT_DEVICE: {exc}", hint="auto, cpu, cuda or cuda:N", id="robustness.E001"
            )
        ]
    return []
