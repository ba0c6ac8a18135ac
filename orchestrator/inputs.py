"""What frameq accepts as input and output files, checked before any job work starts."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".m4v", ".avi")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES
VIDEO_OUTPUT_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm")
IMAGE_OUTPUT_SUFFIXES = IMAGE_SUFFIXES
# Recipes whose output has an alpha channel: video as ProRes 4444 in MOV (for editing) or VP9
# in WebM (for browsers), images as PNG/WebP.
ALPHA_VIDEO_SUFFIXES = (".mov", ".webm")
ALPHA_IMAGE_SUFFIXES = (".png", ".webp")


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return None


def check_file(path: Path, name: str) -> None:
    if not path.exists():
        raise InputError(name, "no such file")
    if not path.is_file():
        raise InputError(name, "not a regular file")
    if path.stat().st_size == 0:
        raise InputError(name, "empty file (0 bytes)")


def output_suffix_for(input_path: Path, output: Path | None, alpha: bool = False) -> str:
    """The output format: the -o file's suffix, checked against the input's kind and, for a
    recipe whose output has an alpha channel, against the formats that can hold one."""
    allowed = _allowed(kind_of(input_path), alpha)
    if output is None or not output.suffix:
        return allowed[0]
    suffix = output.suffix.lower()
    if suffix not in allowed:
        what = f"{kind_of(input_path) or 'video'} output{' with alpha' if alpha else ''}"
        raise InputError(str(output), f"a {what} must end in {', '.join(allowed)}")
    return suffix


def directory_output_suffix(src: Path, alpha: bool = False) -> str:
    """In directory mode each output keeps its input's format where it can."""
    allowed = _allowed(kind_of(src), alpha)
    return src.suffix.lower() if src.suffix.lower() in allowed else allowed[0]


def _allowed(kind: str | None, alpha: bool) -> tuple[str, ...]:
    if kind == "image":
        return ALPHA_IMAGE_SUFFIXES if alpha else (".png", *[s for s in IMAGE_OUTPUT_SUFFIXES if s != ".png"])
    return ALPHA_VIDEO_SUFFIXES if alpha else VIDEO_OUTPUT_SUFFIXES
