"""Frames are decoded as the file stores them; a player shows them turned by the display
rotation (degrees counter-clockwise; a phone video is often stored sideways). What a user gives
in the pixels they see, a point or a mask, is turned into stored pixels here."""

from __future__ import annotations

import math

from models.turns import unturn
from orchestrator.errors import InputError


def shown_size(height: int, width: int, rotation: int) -> tuple[int, int]:
    """(height, width) of stored frames as they are shown."""
    return (width, height) if (rotation // 90) % 2 else (height, width)


def stored_point(
    point: tuple[int, int], height: int, width: int, rotation: int, name: str
) -> tuple[int, int]:
    """The stored pixel (x, y) under the shown pixel `point` of frames stored height x width;
    a point off the shown picture is the input's error."""
    x, y = point
    shown_h, shown_w = shown_size(height, width, rotation)
    if not (0 <= x < shown_w and 0 <= y < shown_h):
        raise InputError(name, f"point {x},{y} is outside the {shown_w}x{shown_h} picture")
    # shown = np.rot90(stored, turns): the shown pixel's centre, turned back
    sx, sy = unturn(x + 0.5, y + 0.5, rotation // 90, width, height)
    return math.floor(sx), math.floor(sy)
