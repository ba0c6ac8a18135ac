"""Checks of what a command is given, made before any work: a device or an output that would
fail late (in every task, or after a whole video) is refused at once, in one line naming the
setting or the path."""

from __future__ import annotations

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings


def check_device(settings: Settings, flag: str | None) -> None:
    """Refuse a device this machine does not have: every model task would fail on it."""
    if settings.device in ("auto", "cpu"):
        return  # always there, and no reason to import torch for it
    from models.device import available_devices

    available = available_devices()
    wanted = "cuda:0" if settings.device == "cuda" else settings.device
    if wanted not in available:
        setting = "--device" if flag else "FRAMEQ_DEVICE"
        raise ConfigError(
            f"{setting} {settings.device}: no such device on this machine (available: {', '.join(available)})"
        )
