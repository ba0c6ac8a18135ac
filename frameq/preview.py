"""`frameq styles preview`: every style on one picture, as a labelled contact sheet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from models.device import pick_device, to_tensor, to_uint8
from orchestrator.styles import catalogue, describe, parse_style
from workers.media.images import read_rgb, write_rgb
from workers.tasks.style import styler_for

COLUMNS = 6
LABEL_PX = 22  # the strip under each tile


def contact_sheet(image: Path, output: Path, tile: int, device_name: str, extra: list[dict[str, Any]]) -> int:
    """Draw the original and every style (and `extra` ones) on `image`; returns how many styles."""
    device = pick_device(device_name)
    rgb = _fit(read_rgb(image, str(image)), tile)
    frames = to_tensor([rgb], device)
    specs = [parse_style(ident) for ident, _, _ in catalogue()] + extra
    tiles = [_label(rgb, "original")]
    for spec in tqdm(specs, desc="styles", unit="style", disable=None):
        path = Path(spec["path"]) if "path" in spec else None
        # The tile is small: run each style at the tile's size, so strokes look as on a
        # frame of that size (the working size is what sets their scale).
        styler = styler_for(spec, 1.0, False, min(rgb.shape[:2]), device, path)
        with torch.inference_mode():
            (styled,) = to_uint8(styler(frames))
        tiles.append(_label(styled, describe(spec)))
    write_rgb(_grid(tiles), output)
    return len(specs)


def _fit(rgb: np.ndarray, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def _label(rgb: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((LABEL_PX, rgb.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, LABEL_PX - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([rgb, strip])


def _grid(tiles: list[np.ndarray]) -> np.ndarray:
    rows = math.ceil(len(tiles) / COLUMNS)
    h, w = tiles[0].shape[:2]
    sheet = np.full((rows * h, COLUMNS * w, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, COLUMNS)
        sheet[r * h : r * h + t.shape[0], c * w : c * w + t.shape[1]] = t
    return sheet
