"""The erase recipe's --mask as one bool mask per frame, fitted to the frames as they are stored."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from orchestrator.errors import InputError
from orchestrator.masks import MASK_THRESHOLD, check_fit
from workers.media.background import Background
from workers.media.images import read_rgb
from workers.media.shown import shown_size


class Masks:
    """What to remove at given times (seconds): a mask picture for every frame, or the frame of
    a mask video at or before each time (a shorter video loops, as a background does). Drawn
    on the picture as it is shown, so a phone video stored sideways gets its mask turned with
    it; scaled to the frame when drawn on a scaled copy, refused when of another shape."""

    def __init__(self, spec: dict, path: Path, height: int, width: int, rotation: int = 0) -> None:
        check_fit(_size(spec["kind"], path), shown_size(height, width, rotation))
        # The frames are fetched and fitted as a background's are; grey levels then say "remove".
        self.frames = Background(spec, path, height, width, rotation, name="mask")
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (fitted frame, its mask)

    def at(self, t: float) -> np.ndarray:
        frame = self.frames.at(t)
        if self._last is None or self._last[0] is not frame:  # a still mask: made once
            self._last = (frame, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) >= MASK_THRESHOLD)
        return self._last[1]


def _size(kind: str, path: Path) -> tuple[int, int]:
    """(height, width) of the mask as shown."""
    if kind == "image":
        return read_rgb(path, "mask image").shape[:2]  # type: ignore[return-value]
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.height, stream.width
    except (av.FFmpegError, IndexError) as exc:
        raise InputError("mask video", f"not a readable video ({exc})") from None
