"""Backgrounds for bg-replace, fitted to the frame: a colour, an image, or a looping video."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from orchestrator.errors import InputError
from workers.media.images import read_rgb


def cover(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover height x width, keeping the aspect ratio, and crop the middle."""
    h, w = rgb.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


class Background:
    """Background frames at given times (seconds), fitted to the frames as they are shown and
    turned into the orientation they are stored in: a phone video stored landscape and shown
    upright (`rotation`, degrees counter-clockwise) gets an upright background."""

    def __init__(
        self,
        spec: dict,
        path: Path | None,
        height: int,
        width: int,
        rotation: int = 0,
        name: str = "background",
    ) -> None:
        self.turns = (rotation // 90) % 4
        if self.turns % 2:  # shown sideways: fit to the shown size
            height, width = width, height
        self.height, self.width = height, width
        self.still: np.ndarray | None = None
        self.path = path
        self._frames: Iterator[tuple[float, np.ndarray]] = iter(())
        self._current: tuple[float, np.ndarray] | None = None
        self._next: tuple[float, np.ndarray] | None = None
        self.duration = 0.0
        if "colour" in spec:
            self.still = np.full((height, width, 3), spec["colour"], np.uint8)
        elif spec.get("kind") == "image":
            assert path is not None
            self.still = self._stored(cover(read_rgb(path, f"{name} image"), height, width))
        else:
            assert path is not None
            try:
                with av.open(str(path)) as container:
                    container.streams.video[0]
                    self.duration = float(container.duration or 0) / 1e6
            except (av.FFmpegError, IndexError, TypeError) as exc:
                raise InputError(f"{name} video", f"not a readable video ({exc})") from None

    def at(self, t: float) -> np.ndarray:
        if self.still is not None:
            return self.still
        t = t % self.duration if self.duration > 0 else 0.0  # a short background loops
        if self._current is None or t < self._current[0]:  # first use, or looped to the start
            self._frames = self._decode()
            self._current = next(self._frames)
            self._next = next(self._frames, None)
        while self._next is not None and self._next[0] <= t:  # the last frame at or before t
            self._current = self._next
            self._next = next(self._frames, None)
        return self._current[1]

    def _decode(self) -> Iterator[tuple[float, np.ndarray]]:
        with av.open(str(self.path)) as container:
            for frame in container.decode(container.streams.video[0]):
                if frame.time is not None:
                    shown = cover(frame.to_ndarray(format="rgb24"), self.height, self.width)
                    yield frame.time, self._stored(shown)

    def _stored(self, shown: np.ndarray) -> np.ndarray:
        """Undo the display rotation (np.rot90 turns counter-clockwise for positive k)."""
        return np.ascontiguousarray(np.rot90(shown, -self.turns)) if self.turns else shown
