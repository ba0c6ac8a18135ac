"""The one rule for points of a picture turned by quarter turns (np.rot90 and torch.rot90: k
quarters anticlockwise): where a point of the turned picture lies in the picture itself."""

from __future__ import annotations

from typing import TypeVar

import torch

T = TypeVar("T", float, torch.Tensor)


def unturn(x: T, y: T, turns: int, width: int, height: int) -> tuple[T, T]:
    """(x, y) in the pixels of a picture width x height turned `turns` quarters -> the same
    point in the picture's own pixels (continuous coordinates: a pixel's centre is at +0.5)."""
    turns %= 4
    if turns == 1:
        return width - y, x
    if turns == 2:
        return width - x, height - y
    if turns == 3:
        return y, height - x
    return x, y
