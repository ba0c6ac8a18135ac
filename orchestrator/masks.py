"""The `--mask` of the erase recipe: a picture of what to remove (white), or a video of one
mask per frame. The one rule for what a mask file is and how it fits the frames it masks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.inputs import check_file, kind_of
from orchestrator.store import job_prefix

# A mask drawn on a scaled copy of the picture (a preview, a thumbnail) is scaled to it; one of
# another shape was drawn for another picture. Aspect ratios within this share are the same
# shape (rounding a scaled copy's sides to whole pixels moves its ratio by well under 1 %).
ASPECT_TOLERANCE = 0.02
MASK_THRESHOLD = 128  # grey level: at or above, the pixel is removed


def parse_mask(value: str) -> dict[str, Any]:
    """A mask file -> {"path": ..., "kind": "image" | "video"} (the caller uploads it)."""
    path = Path(value.strip()).expanduser()
    kind = kind_of(path)
    if kind is None:
        raise InputError(value, "not a mask: give an image (white: remove) or a video of one mask per frame")
    check_file(path, value)
    return {"path": str(path), "kind": kind}


def mask_key(job_id: str, suffix: str) -> str:
    return f"{job_prefix(job_id)}mask{suffix.lower()}"


def check_fit(mask_hw: tuple[int, int], frame_hw: tuple[int, int]) -> None:
    """Refuse a mask whose shape is not the frame's (shown orientation, both)."""
    (mh, mw), (fh, fw) = mask_hw, frame_hw
    if abs((mw / mh) / (fw / fh) - 1.0) > ASPECT_TOLERANCE:
        raise ValueError(f"the mask ({mw}x{mh}) does not fit the {fw}x{fh} picture: draw it on that picture")
