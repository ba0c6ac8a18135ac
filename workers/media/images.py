"""Still images: read upright (EXIF orientation applied) as RGB, write in the asked format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from orchestrator.errors import InputError

SAVE_OPTIONS = {".jpg": {"quality": 95}, ".jpeg": {"quality": 95}, ".webp": {"quality": 95}}


def read_rgb(path: Path, name: str) -> np.ndarray:
    """[H, W, 3] uint8, rotated as the EXIF orientation says."""
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return np.array(upright.convert("RGB"))  # a writable copy
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(name, f"not a readable image ({exc})") from None


# Pillow's modes for what a stage's frames hold (orchestrator/formats.py PIXELS).
MODES = {"rgb": "RGB", "rgba": "RGBA", "grey": "L"}


def read_pixels(path: Path, name: str, pixels: str) -> np.ndarray:
    """An intermediate PNG as the arrays its stage wrote: [H, W, 3], [H, W, 4] or [H, W] (grey)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert(MODES[pixels]))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(name, f"not a readable image ({exc})") from None


def write_rgb(rgb: np.ndarray, path: Path, suffix: str | None = None) -> None:
    """Any of the layouts above (Pillow picks the mode from the array's shape)."""
    suffix = (suffix or path.suffix).lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[suffix]
    Image.fromarray(rgb).save(path, format=fmt, **SAVE_OPTIONS.get(suffix, {}))


def convert_image(src: Path, dst: Path, suffix: str) -> None:
    """Re-save an intermediate PNG in the output format, keeping its alpha where it can."""
    with Image.open(src) as image:
        _save_output(image, dst, suffix)


def save_output(pixels: np.ndarray, dst: Path, suffix: str) -> None:
    """A stage's frame as an output file: as convert_image writes its PNG."""
    _save_output(Image.fromarray(pixels), dst, suffix)


def _save_output(image: Image.Image, dst: Path, suffix: str) -> None:
    """The one rule for image outputs: RGB, or RGBA where the format holds alpha (a grey
    matte is written as RGB)."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[suffix.lower()]
    keep = image if image.mode in ("RGB", "RGBA") and fmt != "JPEG" else image.convert("RGB")
    keep.save(dst, format=fmt, **SAVE_OPTIONS.get(suffix.lower(), {}))
