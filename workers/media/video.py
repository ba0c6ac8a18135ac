"""Decode one segment's frames and encode processed frames with their original timestamps."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import cast

import av
import numpy as np
from av.video.stream import VideoStream

from orchestrator.errors import InputError

# Segment formats by file extension. Segments are stream-copied into the output, so the output
# stage's segments carry the output's codec: VP9 for WebM, ProRes 4444 for video with alpha in
# MOV, H.264 for everything else (and for every intermediate stage).
SEGMENT_CODECS = {"mp4": "libx264", "mov": "prores_ks", "webm": "libvpx-vp9"}
# VP9's constant-quality scale runs 0-63 where H.264's runs 0-51: FRAMEQ_CRF + 11, so the default
# 20 gives 31, the CRF recommended for 1080p VP9 on demand (Google's "VP9 settings for VOD").
VP9_CRF_OFFSET = 11


def bitexact(path: Path) -> dict[str, str]:
    """Muxer options: Matroska (WebM) writes a random segment id unless told to be bit-exact,
    and equal input must give equal output."""
    return {"fflags": "+bitexact"} if path.suffix.lower() in (".webm", ".mkv") else {}


def segment_ext(output_suffix: str, alpha: bool) -> str:
    """The segment format of a job's output stage (intermediate stages always use "mp4")."""
    if output_suffix == ".webm":
        return "webm"
    return "mov" if alpha else "mp4"


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
    """Frames written at the source's timestamps into one segment file, whose extension picks
    the format (SEGMENT_CODECS): RGB frames, or with `alpha` RGBA frames (ProRes 4444 in MOV,
    10-bit 4:4:4 with alpha; or VP9 with alpha in WebM)."""

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
        ext = path.suffix.lstrip(".")
        # H.264 here carries no alpha; ProRes segments exist only for alpha
        if ext not in SEGMENT_CODECS or (alpha and ext == "mp4") or (not alpha and ext == "mov"):
            raise ValueError(f"no .{ext} segments {'with' if alpha else 'without'} alpha")
        self.container = av.open(str(path), mode="w", format=ext, container_options=bitexact(path))
        self.stream = cast(VideoStream, self.container.add_stream(SEGMENT_CODECS[ext], rate=rate))
        self.stream.width = width
        self.stream.height = height
        self.pixels = "rgba" if alpha else "rgb24"
        self.time_base = time_base
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        if rotation:
            self.stream.set_display_rotation(rotation)
        if ext == "mov":
            self.stream.pix_fmt = "yuva444p10le"
            self.stream.options = {"profile": "4444", "alpha_bits": "16"}
        elif ext == "webm":
            # 4:2:0 (odd sizes too): the only VP9 layout that carries alpha, and what browsers play.
            self.stream.pix_fmt = "yuva420p" if alpha else "yuv420p"
            vp9_crf = min(63, crf + VP9_CRF_OFFSET)
            # b=0: constant quality; cpu-used 4 with row threads is libvpx's usual speed/quality
            # point for files (lower is slower).
            self.stream.options = {
                "crf": str(vp9_crf),
                "b": "0",
                "deadline": "good",
                "cpu-used": "4",
                "row-mt": "1",
            }
        else:
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
