"""Probe inputs: what kind of media, its geometry and timing, and where its keyframes are.

Every expected problem becomes an `InputError` naming the file and the problem.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image, UnidentifiedImageError

from orchestrator.errors import InputError
from orchestrator.inputs import check_file, kind_of


@dataclass(frozen=True)
class AudioInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    codec: str
    pix_fmt: str
    time_base: Fraction
    avg_rate: Fraction
    frames: int
    duration_s: float
    rotation: int  # degrees counter-clockwise, as the display matrix says
    variable_rate: bool
    audio: list[AudioInfo]
    frame_pts: list[int] = field(repr=False)  # presentation order
    keyframe_pts: list[int] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """What the job row keeps (JSON): everything but the per-frame lists."""
        data = asdict(self)
        del data["frame_pts"], data["keyframe_pts"]
        data["time_base"] = str(self.time_base)
        data["avg_rate"] = str(self.avg_rate)
        return data


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def probe(path: Path, name: str, max_pixels: int) -> VideoInfo | ImageInfo:
    check_file(path, name)
    if kind_of(path) == "image":
        return probe_image(path, name, max_pixels)
    return probe_video(path, name, max_pixels)


def probe_image(path: Path, name: str, max_pixels: int) -> ImageInfo:
    try:
        with Image.open(path) as image:
            width, height = image.size
            fmt = image.format or "unknown"
    except UnidentifiedImageError:  # its message names the stored copy, not the user's file
        raise InputError(name, "not a readable image (unknown format, or corrupt)") from None
    except OSError as exc:
        raise InputError(name, f"not a readable image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise InputError(name, f"image too large ({exc})") from None
    check_size(name, width, height, max_pixels)
    return ImageInfo(width, height, fmt.lower())


def check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputError(
            name, f"{width}x{height} is over the limit of {max_pixels} pixels (FRAMEQ_MAX_PIXELS)"
        )


def probe_video(path: Path, name: str, max_pixels: int) -> VideoInfo:
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise InputError(name, f"not a video file or corrupt ({_reason(exc)})") from None
    with container:
        if not container.streams.video:
            raise InputError(name, "no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise InputError(name, "unsupported video codec (no decoder for it)")
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise InputError(name, f"video stream ({codec}) has no frame size")
        check_size(name, width, height, max_pixels)
        if stream.time_base is None:
            raise InputError(name, "video stream has no time base")
        frame_pts, keyframe_pts = _index_packets(container, stream, name)
        first_frame = _first_frame(path, name)
        if any(a.codec_context is None for a in container.streams.audio):
            raise InputError(name, "unsupported audio codec (no decoder for it)")
        audio = [
            AudioInfo(a.index, a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels)
            for a in container.streams.audio
        ]
        frame_pts.sort()
        tb = Fraction(stream.time_base)
        deltas = {b - a for a, b in itertools.pairwise(frame_pts)}
        step = min(deltas) if deltas else 0
        avg_rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(25)
        # The last frame lasts as long as the one before it (or one nominal frame).
        last = (frame_pts[-1] - frame_pts[-2]) if len(frame_pts) > 1 else round(1 / (avg_rate * tb))
        return VideoInfo(
            width=width,
            height=height,
            codec=codec,
            pix_fmt=first_frame.format.name,
            time_base=tb,
            avg_rate=avg_rate,
            frames=len(frame_pts),
            duration_s=float((frame_pts[-1] + last - frame_pts[0]) * tb),
            rotation=int(first_frame.rotation or 0),
            variable_rate=len(deltas) > 1 and max(deltas) - step > max(1, step // 100),
            audio=audio,
            frame_pts=frame_pts,
            keyframe_pts=keyframe_pts,
        )


def _index_packets(container: Any, stream: Any, name: str) -> tuple[list[int], list[int]]:
    """Demux (no decoding) every video packet: presentation times and keyframes."""
    frame_pts: list[int] = []
    keyframe_pts: list[int] = []
    packets = 0
    size = Path(container.name).stat().st_size
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                raise InputError(name, "video packets carry no timestamps")
            if packet.pos is not None and packet.pos + packet.size > size:
                raise InputError(name, "truncated video (frames past the end of the file)")
            packets += 1
            if packet.is_keyframe:
                keyframe_pts.append(packet.pts)
            if not packet.is_discard:  # before an edit list's start: decoded, never shown
                frame_pts.append(packet.pts)
    except av.FFmpegError as exc:
        raise InputError(name, f"corrupt video ({_reason(exc)})") from None
    if not frame_pts:
        raise InputError(name, "video stream has no frames")
    if stream.frames and packets < stream.frames:  # the index promises more than is there
        raise InputError(name, f"truncated video ({packets} of {stream.frames} frames present)")
    return frame_pts, keyframe_pts


def _first_frame(path: Path, name: str) -> av.VideoFrame:
    """Decode one frame: proves the codec is supported and the data decodes."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return frame
    except av.FFmpegError as exc:
        raise InputError(name, f"cannot decode video ({_reason(exc)})") from None
    raise InputError(name, "no decodable video frame")


def _reason(exc: av.FFmpegError) -> str:
    return getattr(exc, "strerror", None) or str(exc)
