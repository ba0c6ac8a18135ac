"""Decode one segment's frames and encode processed frames with their original timestamps."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from orchestrator.errors import InputError

# Output container -> video encoder. Segments are always H.264 in MP4 (stream-copied later).
ENCODERS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".m4v": "libx264"}


def iter_segment(path: Path, name: str, start_pts: int, end_pts: int | None) -> Iterator[av.VideoFrame]:
    """Frames with start_pts <= pts < end_pts, in presentation order.

    Seeks to the keyframe at `start_pts`; stops at the first frame at or past `end_pts`
    (decoder output is in presentation order, so every earlier frame has been seen).
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start_pts > (stream.start_time or 0):
                container.seek(start_pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise InputError(name, "decoded frame without a timestamp")
                if end_pts is not None and frame.pts >= end_pts:
                    return
                if frame.pts >= start_pts:
                    yield frame
    except av.FFmpegError as exc:
        raise InputError(name, f"corrupt video while decoding ({exc})") from None


def iter_all(path: Path, name: str) -> Iterator[av.VideoFrame]:
    """Every frame of a file's first video stream, in presentation order."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)
    except av.FFmpegError as exc:
        raise InputError(name, f"corrupt video while decoding ({exc})") from None


class SegmentWriter:
    """H.264 encoder writing frames at the source's timestamps into an MP4 file; with
    `alpha`, RGBA frames into ProRes 4444 (10-bit 4:4:4 with alpha) in a MOV file."""

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction,
        crf: int,
        preset: str,
        rotation: int = 0,
        alpha: bool = False,
    ) -> None:
        self.container = av.open(str(path), mode="w", format="mov" if alpha else "mp4")
        self.stream = self.container.add_stream("prores_ks" if alpha else "libx264", rate=rate)
        self.stream.width = width
        self.stream.height = height
        self.pixels = "rgba" if alpha else "rgb24"
        self.time_base = time_base
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        if rotation:
            self.stream.set_display_rotation(rotation)
        if alpha:
            self.stream.pix_fmt = "yuva444p10le"
            self.stream.options = {"profile": "4444", "alpha_bits": "16"}
            return
        # 4:2:0 needs even sizes; odd ones keep their exact size in 4:4:4 instead.
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        # mbtree off: with it, x264 (as bundled with PyAV) gave different bytes for the same
        # frames from run to run (measured, also single-threaded); equal input must give
        # equal output.
        self.stream.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}

    def write(self, rgb: np.ndarray, pts: int) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format=self.pixels)
        frame.pts = pts
        frame.time_base = self.time_base
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.container.close()
