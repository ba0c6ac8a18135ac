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
from orchestrator.formats import Format

# Timestamps exactly as given: the first decode times of a stream with B-frames are negative,
# which the NUT muxer would otherwise shift (moving every pts) or drop.
KEEP_TIMESTAMPS = {"avoid_negative_ts": "disabled"}
# Encoders of the segment formats (orchestrator/formats.py decides which a task writes).
ENCODERS = {
    "h264": "libx264",
    "prores": "prores_ks",
    "vp9": "libvpx-vp9",
    "ffv1": "ffv1",
    "x264rgb": "libx264rgb",
}
# How a task's frames are handed to the encoder, by what they hold.
FRAME_PIXELS = {"rgb": "rgb24", "rgba": "rgba", "grey": "gray"}
# VP9's constant-quality scale runs 0-63 where H.264's runs 0-51: FRAMEQ_CRF + 11, so the default
# 20 gives 31, the CRF recommended for 1080p VP9 on demand (Google's "VP9 settings for VOD").
VP9_CRF_OFFSET = 11


def bitexact(path: Path) -> dict[str, str]:
    """Muxer options: Matroska (WebM) writes a random segment id unless told to be bit-exact,
    and equal input must give equal output."""
    return {"fflags": "+bitexact"} if path.suffix.lower() in (".webm", ".mkv") else {}


def iter_segment(
    path: Path,
    name: str,
    start_pts: int,
    end_pts: int | None,
    time_base: Fraction | None = None,
    offset: int = 0,
) -> Iterator[av.VideoFrame]:
    """Frames with start_pts <= pts < end_pts, in presentation order.

    For a slice of the source (`workers/media/slices.py`), `time_base` is the source's, that of
    the three timestamps, when the file has another of its own (the muxer may pick a finer one),
    and `offset` what the slice added to every timestamp; the frames come out in the source's
    own timestamps. Seeks to
    the keyframe at `start_pts`; stops at the first frame at or past `end_pts` (decoder output
    is in presentation order, so every earlier frame has been seen).
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            own = Fraction(stream.time_base or 1)
            base = time_base or own
            if (start_pts + offset) * base > (stream.start_time or 0) * own:
                target = int((start_pts + offset) * base / own)
                container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise InputError(name, "decoded frame without a timestamp")
                if base != own or offset:  # exact: the slice's ticks are the source's, rescaled
                    frame.pts, frame.time_base = round(frame.pts * own / base) - offset, base
                if end_pts is not None and frame.pts >= end_pts:
                    return
                if frame.pts >= start_pts:
                    yield frame
    except av.FFmpegError as exc:
        raise InputError(name, f"corrupt video while decoding ({exc})") from None


def _encoding(fmt: Format, width: int, height: int, crf: int, preset: str) -> tuple[str, dict[str, object]]:
    """(pix_fmt, encoder options) of a segment format."""
    if fmt.codec == "prores":
        return "yuva444p10le", {"profile": "4444", "alpha_bits": "16"}
    if fmt.codec == "vp9":
        # 4:2:0 (odd sizes too): the only VP9 layout that carries alpha, and what browsers play.
        # b=0: constant quality; cpu-used 4 with row threads is libvpx's usual speed/quality
        # point for files (lower is slower).
        options = {"crf": str(min(63, crf + VP9_CRF_OFFSET)), "b": "0", "deadline": "good"}
        return ("yuva420p" if fmt.pixels == "rgba" else "yuv420p"), {
            **options,
            "cpu-used": "4",
            "row-mt": "1",
        }
    if fmt.codec == "ffv1":  # lossless, one plane for a matte
        return {"grey": "gray", "rgba": "bgra", "rgb": "bgr0"}[fmt.pixels], {"level": "3", "slices": "4"}
    if fmt.codec == "x264rgb":  # lossless RGB (qp 0 in RGB, no colour conversion)
        return "bgr24", {"qp": "0", "preset": "ultrafast"}
    # H.264: 4:2:0 needs even sizes; odd ones keep their exact size in 4:4:4 instead.
    # mbtree off: with it, x264 (as bundled with PyAV) gave different bytes for the same frames
    # from run to run (measured, also single-threaded); equal input must give equal output.
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    return pix_fmt, {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}


def decoded_pixels(fmt: Format) -> str:
    """The numpy layout a reader of `fmt` segments gets: what its writer was given."""
    return FRAME_PIXELS[fmt.pixels]


def source_ticks(frame: av.VideoFrame, time_base: Fraction) -> int:
    """A decoded frame's time in the source's ticks, whatever its file's own time base (the NUT
    muxer may pick a finer one: the rescale is exact)."""
    return round(Fraction(frame.pts or 0) * Fraction(frame.time_base or time_base) / time_base)


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
    """Frames written at the source's timestamps into one segment file in the format `fmt`:
    RGB, RGBA or grey frames as numpy arrays ([H, W, 3], [H, W, 4] or [H, W])."""

    def __init__(
        self,
        path: Path,
        fmt: Format,
        *,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction,
        crf: int,
        preset: str,
        rotation: int = 0,
    ) -> None:
        # H.264 carries no alpha here, and ProRes segments exist only for alpha.
        alpha_ok = fmt.pixels != "rgba" or fmt.codec in ("prores", "vp9", "ffv1")
        if fmt.codec not in ENCODERS or not alpha_ok or (fmt.codec == "prores" and fmt.pixels != "rgba"):
            raise ValueError(f"no {fmt} segments")
        options = {**bitexact(path), **(KEEP_TIMESTAMPS if fmt.ext == "nut" else {})}
        self.container = av.open(str(path), mode="w", format=fmt.ext, container_options=options)
        self.stream = cast(VideoStream, self.container.add_stream(ENCODERS[fmt.codec], rate=rate))
        self.stream.width = width
        self.stream.height = height
        self.pixels = FRAME_PIXELS[fmt.pixels]
        self.time_base = time_base
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        if rotation:
            self.stream.set_display_rotation(rotation)
        self.stream.pix_fmt, self.stream.options = _encoding(fmt, width, height, crf, preset)

    def write(self, pixels: np.ndarray, pts: int) -> None:
        frame = av.VideoFrame.from_ndarray(pixels, format=self.pixels)
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
