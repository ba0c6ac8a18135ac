"""Still images: read upright (EXIF orientation applied) as RGB, write in the asked format,
with the input's colour profile and EXIF unless the job says otherwise."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from orchestrator.errors import InputError

log = logging.getLogger("frameq.worker")

SAVE_OPTIONS = {".jpg": {"quality": 95}, ".jpeg": {"quality": 95}, ".webp": {"quality": 95}}


def read_rgb(path: Path, name: str) -> np.ndarray:
    """[H, W, 3] uint8, rotated as the EXIF orientation says (read_picture without its
    metadata)."""
    return read_picture(path, name)[0]


ORIENTATION = 0x0112  # the EXIF tag; an output is upright, so it says nothing of turning


@dataclass(frozen=True)
class Metadata:
    """What an output keeps of its input: the ICC colour profile and the EXIF block."""

    icc: bytes | None = None
    exif: bytes | None = None


# The pixel modes an ICC profile's colour space describes (what littlecms converts from).
PROFILE_MODES = {"RGB": ("RGB",), "CMYK": ("CMYK",), "GRAY": ("L",)}


def read_picture(path: Path, name: str, srgb: bool = False) -> tuple[np.ndarray, Metadata]:
    """[H, W, 3] uint8 upright, and its metadata (EXIF without the orientation). The ICC
    profile is kept with RGB pixels; `srgb` (and any profile of another colour space, CMYK or
    grey, which RGB output cannot carry) converts the colours to sRGB instead, no profile kept."""
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            icc = image.info.get("icc_profile") or None
            exif = image.getexif()
            if icc is not None:
                upright, icc = _to_srgb(upright, icc, srgb, name)
            rgb = np.array(upright.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(name, f"not a readable image ({exc})") from None
    exif.pop(ORIENTATION, None)
    try:
        block = exif.tobytes() if len(exif) else None
    except Exception as exc:  # Pillow cannot write back some real-world EXIF: the image goes on
        log.warning("%s: EXIF left out (%s)", name, exc)
        block = None
    return rgb, Metadata(icc, block)


def _to_srgb(image: Image.Image, icc: bytes, srgb: bool, name: str) -> tuple[Image.Image, bytes | None]:
    """The image converted to sRGB from its profile, when asked or when the profile is not an
    RGB one; else as it is, with its profile."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError) as exc:  # littlecms refuses a corrupt profile
        if srgb:
            raise InputError(name, f"its colour profile cannot be read ({exc})") from None
        return image, None  # kept as it is would tag the output with garbage
    space = str(profile.profile.xcolor_space).strip()
    if not srgb and space == "RGB":
        return image, icc
    modes = PROFILE_MODES.get(space, ())
    if image.mode not in modes:  # a palette or alpha image under the profile: its own colours
        image = image.convert(modes[0]) if modes else image
    try:
        converted = ImageCms.profileToProfile(
            image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        raise InputError(name, f"its colour profile cannot be used ({exc})") from None
    return converted or image, None


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
    try:
        keep.save(dst, format=fmt, **SAVE_OPTIONS.get(suffix.lower(), {}), **extra)
    except ValueError as exc:  # EXIF over JPEG's 64 KB segment: the picture without it
        if "exif" not in extra:
            raise
        log.warning("%s: EXIF left out (%s)", dst.name, exc)
        extra.pop("exif")
        keep.save(dst, format=fmt, **SAVE_OPTIONS.get(suffix.lower(), {}), **extra)
