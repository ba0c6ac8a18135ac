"""Still images: read upright (EXIF orientation applied) as RGB, write in the asked format,
with the input's colour profile and EXIF unless the job says otherwise."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

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


ORIENTATION = 0x0112  # the EXIF tag; an output is upright, so it says nothing of turning


@dataclass(frozen=True)
class Metadata:
    """What an output keeps of its input: the ICC colour profile and the EXIF block."""

    icc: bytes | None = None
    exif: bytes | None = None


def read_picture(path: Path, name: str, srgb: bool = False) -> tuple[np.ndarray, Metadata]:
    """[H, W, 3] uint8 upright, and its metadata (EXIF without the orientation). `srgb`: the
    colours converted from the input's ICC profile to sRGB, and no profile kept."""
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
            icc = image.info.get("icc_profile") or None
            exif = image.getexif()
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(name, f"not a readable image ({exc})") from None
    exif.pop(ORIENTATION, None)
    if srgb and icc is not None:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                upright, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
        except (ImageCms.PyCMSError, OSError) as exc:  # littlecms refuses a corrupt profile
            raise InputError(name, f"its colour profile cannot be read ({exc})") from None
        upright, icc = converted or upright, None
    return np.array(upright), Metadata(icc, exif.tobytes() if len(exif) else None)


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


def save_output(pixels: np.ndarray, dst: Path, suffix: str, metadata: Metadata | None = None) -> None:
    """A stage's frame as an output file: as convert_image writes its PNG, with `metadata`."""
    _save_output(Image.fromarray(pixels), dst, suffix, metadata or Metadata())


def _save_output(image: Image.Image, dst: Path, suffix: str, metadata: Metadata = Metadata()) -> None:
    """The one rule for image outputs: RGB, or RGBA where the format holds alpha (a grey
    matte is written as RGB); JPEG, PNG and WebP all carry a profile and EXIF."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[suffix.lower()]
    keep = image if image.mode in ("RGB", "RGBA") and fmt != "JPEG" else image.convert("RGB")
    extra = {k: v for k, v in (("icc_profile", metadata.icc), ("exif", metadata.exif)) if v is not None}
    keep.save(dst, format=fmt, **SAVE_OPTIONS.get(suffix.lower(), {}), **extra)
