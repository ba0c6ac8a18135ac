"""Job parameters: everything a job fixes when it is submitted, validated once, stored with the
job and read by every worker as attributes, so all the workers of one job agree (the matte
network, the encoder settings, ...) whatever their own environment says.

The rules for each value live here; `Settings` (the defaults, from the environment) checks its
own copies with the same functions.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.styles import check_style

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower")
# The pose-landmark networks the matte stage can run (models/person.py LANDMARK_MODELS).
MATTE_MODELS = ("heavy", "full")


POINT = re.compile(r"\s*([0-9]+)\s*,\s*([0-9]+)\s*")
RATIO = re.compile(r"\s*([0-9]+)\s*:\s*([0-9]+)\s*")


def parse_ratio(text: str) -> tuple[int, int]:
    """An aspect ratio as W:H in positive whole numbers (1:1, 4:5, 9:16, 16:9, 21:9, ...)."""
    match = RATIO.fullmatch(text)
    if match is None or int(match[1]) == 0 or int(match[2]) == 0:
        raise ConfigError(f"aspect ratio {text!r} is not W:H in positive whole numbers (e.g. 1:1, 4:5, 9:16)")
    return int(match[1]), int(match[2])


def parse_ratios(text: str) -> tuple[tuple[int, int], ...]:
    """One aspect ratio or several, comma-separated (1:1,4:5,9:16); each once, in order."""
    ratios = tuple(dict.fromkeys(parse_ratio(part) for part in text.split(",") if part.strip()))
    if not ratios:
        raise ConfigError(f"aspect ratio {text!r} is not W:H in positive whole numbers (e.g. 1:1, 4:5, 9:16)")
    return ratios


def ratio_name(ratio: tuple[int, int]) -> str:
    """How an output cut to `ratio` is told from its siblings: 4:5 -> "4x5" (photo.4x5.jpg)."""
    return f"{ratio[0]}x{ratio[1]}"


def parse_point(text: str) -> tuple[int, int]:
    """A point X,Y in the picture's pixels (0,0 the top left), whole numbers."""
    match = POINT.fullmatch(text)
    if match is None:
        raise ConfigError(f"point {text!r} is not X,Y in whole pixels from the top left (e.g. 120,340)")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class PictureOptions:
    """What a job does to the picture besides its recipe's work: the aspect ratio `crop` cuts
    to (width, height), the point whose person or object `inpaint` removes (x, y) and the
    point whose person alone a matte keeps (x, y, on the first frame), None when not asked;
    whether a matting network redraws the people's edges (`fine_edges`); the `mask` file
    `erase` removes what it covers of; and for image
    outputs, whether their metadata (EXIF) is left out and whether their colours are converted
    to sRGB from the input's colour profile (else the profile is kept with them)."""

    ratio: tuple[int, int] | None = None
    at: tuple[int, int] | None = None
    strip_metadata: bool = False
    srgb: bool = False
    person: tuple[int, int] | None = None
    fine_edges: bool = False
    # erase: what to remove, parse_mask's {"path", "kind"} until uploaded, then {"key", "kind"}
    mask: dict[str, Any] | None = None
    # crop: the aspect ratios asked beyond `ratio`; a job cuts one, so a command asked for
    # several makes a job for each (each_ratio)
    more_ratios: tuple[tuple[int, int], ...] = ()

    def each_ratio(self) -> list[PictureOptions]:
        """These options once per aspect ratio asked, each with one ratio."""
        return [replace(self, ratio=r, more_ratios=()) for r in (self.ratio, *self.more_ratios)]


NO_PICTURE_OPTIONS = PictureOptions()


def check_encoding(crf: int, preset: str) -> None:
    if not 0 <= crf <= 51:
        raise ConfigError(f"crf (quality) must be within 0..51, got {crf}")
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")


def check_work(segment_s: float, batch_frames: int, max_pixels: int, matte_model: str) -> None:
    if not segment_s > 0:
        raise ConfigError(f"segment length must be > 0 seconds, got {segment_s}")
    if not 1 <= batch_frames <= 256:
        raise ConfigError(f"batch frames must be within 1..256, got {batch_frames}")
    if max_pixels < 64 * 64:
        raise ConfigError(f"max pixels must be at least 4096, got {max_pixels}")
    if matte_model not in MATTE_MODELS:
        raise ConfigError(f"FRAMEQ_MATTE_MODEL must be one of {', '.join(MATTE_MODELS)}, got {matte_model!r}")


@dataclass(frozen=True)
class JobParams:
    output_suffix: str  # the output's format: ".mp4", ".webm", ".png", ...
    crf: int = 20
    preset: str = "fast"
    segment_s: float = 2.0
    batch_frames: int = 8
    max_pixels: int = 4096 * 4096
    matte_model: str = "heavy"
    # bg-replace: {"colour": [r, g, b]} or {"kind": "image" | "video", "key": store key}
    background: dict[str, Any] | None = None
    also_outputs: tuple[str, ...] = ()  # earlier stages written as outputs too (the matte)
    keep_intermediates: bool = False  # keep every stage's segments after the job is done
    # The style stage's: what to paint with (orchestrator/styles.py has its forms), how much of
    # it (0: the original, 1: fully styled), whether to keep the original colours (styled
    # luminance only), the short side the network runs at (None: the style's default), and
    # whether video frames are stabilised against flicker.
    style: dict[str, Any] | None = None
    style_strength: float = 1.0
    preserve_colour: bool = False
    style_size: int | None = None
    stabilise: bool = True
    # crop: the aspect ratio (width, height) of the window kept (None: the recipe's, 1:1)
    crop_ratio: tuple[int, int] | None = None
    # inpaint: remove only the person, or else the salient object, under this point (x, y)
    remove_at: tuple[int, int] | None = None
    # matte: only the person under this point (x, y) of the first frame, followed through a video
    person_at: tuple[int, int] | None = None
    # matte: the people's edges redrawn by a portrait-matting network (models/edges.py)
    fine_edges: bool = False
    # erase: {"kind": "image" | "video", "key": store key} of the mask
    mask: dict[str, Any] | None = None
    # Image outputs: without the input's EXIF; in sRGB (converted from the input's ICC profile)
    strip_metadata: bool = False
    srgb: bool = False

    def __post_init__(self) -> None:
        if not self.output_suffix.startswith("."):
            raise ConfigError(f"output suffix must start with a dot, got {self.output_suffix!r}")
        check_encoding(self.crf, self.preset)
        check_work(self.segment_s, self.batch_frames, self.max_pixels, self.matte_model)
        check_style(self.style, self.style_strength, self.style_size)
        if self.crop_ratio is not None and (len(self.crop_ratio) != 2 or min(self.crop_ratio) < 1):
            raise ConfigError(f"crop ratio must be two positive whole numbers, got {self.crop_ratio!r}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["also_outputs"] = list(self.also_outputs)
        data["crop_ratio"] = list(self.crop_ratio) if self.crop_ratio else None
        data["remove_at"] = list(self.remove_at) if self.remove_at else None
        data["person_at"] = list(self.person_at) if self.person_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobParams:
        """Read back what `to_json` stored; unknown keys (from a newer frameq) are refused."""
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise ConfigError(f"job parameters not known to this frameq: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["also_outputs"] = tuple(values.get("also_outputs") or ())
        values["crop_ratio"] = tuple(values["crop_ratio"]) if values.get("crop_ratio") else None
        values["remove_at"] = tuple(values["remove_at"]) if values.get("remove_at") else None
        values["person_at"] = tuple(values["person_at"]) if values.get("person_at") else None
        return cls(**values)
