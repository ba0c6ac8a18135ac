"""Checks of what a command is given, made before any work: a device or an output that would
fail late (in every task, or after a whole video) is refused at once, in one line naming the
setting or the path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from orchestrator.errors import ConfigError, OutputError
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


def check_outputs(paths: Iterable[Path]) -> None:
    """Refuse output files that cannot be written, before the work whose result they are."""
    probed: set[Path] = set()
    for path in paths:
        if path.is_dir():
            raise OutputError(str(path), "is a directory; give a file name")
        if path.exists() and not os.access(path, os.W_OK):
            raise OutputError(str(path), "is read-only")
        if path.parent not in probed:  # a directory of inputs mostly writes into a few folders
            _probe_directory(path.parent, path)
            probed.add(path.parent)


def check_output_directory(path: Path) -> None:
    """The output directory of a directory INPUT must take files (or be creatable)."""
    _probe_directory(path, path)


def _probe_directory(directory: Path, named: Path) -> None:
    """Create and remove a file in `directory`, or in its nearest existing ancestor when it is
    still to be made. Trying, not reading mode bits: read-only mounts, virtual file systems
    (/proc) and a root user that permission bits do not stop all show only that way."""
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(str(named), f"{existing} is not a directory")
    try:
        handle, scratch = tempfile.mkstemp(dir=existing, prefix=".frameq-probe-")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise OutputError(str(named), f"cannot write in {existing} ({reason})") from None
    os.close(handle)
    os.unlink(scratch)
