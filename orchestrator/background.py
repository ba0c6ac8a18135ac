"""The `--background` of recipes that put people over something else: a colour or a file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.inputs import check_file, kind_of
from orchestrator.store import job_prefix

NAMED = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "green": (0, 177, 64),  # chroma-key green
    "blue": (0, 71, 187),  # chroma-key blue
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
}
HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def parse_colour(value: str) -> list[int] | None:
    """'#RRGGBB', 'R,G,B' or a name -> [r, g, b]; anything else None."""
    text = value.strip()
    if text.lower() in NAMED:
        return list(NAMED[text.lower()])
    if match := HEX.fullmatch(text):
        digits = match.group(1)
        return [int(digits[i : i + 2], 16) for i in (0, 2, 4)]
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() for p in parts):
        rgb = [int(p) for p in parts]
        if all(0 <= c <= 255 for c in rgb):
            return rgb
    return None


def parse_background(value: str) -> dict[str, Any]:
    """'#RRGGBB', 'R,G,B' or a name -> {"colour": [r, g, b]}; an image or video file ->
    {"path": ..., "kind": "image" | "video"} (the caller uploads it and records its key)."""
    if (colour := parse_colour(value)) is not None:
        return {"colour": colour}
    text = value.strip()
    path = Path(text).expanduser()
    kind = kind_of(path)
    if kind is None:
        raise InputError(
            value, "not a background: give a colour (#RRGGBB, R,G,B or a name) or an image or video file"
        )
    check_file(path, value)
    return {"path": str(path), "kind": kind}


def background_key(job_id: str, suffix: str) -> str:
    return f"{job_prefix(job_id)}background{suffix.lower()}"
