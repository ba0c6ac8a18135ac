"""Synthetic media made with PyAV for the tests, plus readers that measure outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 48000


@dataclass(frozen=True)
class Clip:
    path: Path
    frames: int
    fps: Fraction
    flash_frame: int | None  # a white frame; the audio beeps at the same instant


def make_video(
    path: Path,
    *,
    width: int = 320,
    height: int = 240,
    frames: int = 60,
    fps: Fraction = Fraction(30),
    gop: int = 15,
    audio: bool = True,
    flash_frame: int | None = 20,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    vfr: bool = False,
) -> Clip:
    """A moving colour pattern; one white frame at `flash_frame` and a beep at that time."""
    time_base = Fraction(1, 90000)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "crf": "18"}
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                pattern(i, width, height, flash=i == flash_frame), format="rgb24"
            )
            frame.pts = pts
            frame.time_base = time_base
            container.mux(video.encode(frame))
            step = 1 / fps * (1.5 if vfr and i % 3 == 0 else 1)  # VFR: every third frame lasts longer
            pts += round(step / time_base)
        container.mux(video.encode(None))
        duration_s = float(pts * time_base)
        if sound is not None:
            flash_s = _flash_time(flash_frame, fps, vfr)
            _write_audio(container, sound, duration_s, flash_s)
    return Clip(path, frames, fps, flash_frame)


def _flash_time(flash_frame: int | None, fps: Fraction, vfr: bool) -> float | None:
    if flash_frame is None:
        return None
    return sum(float(1 / fps) * (1.5 if vfr and i % 3 == 0 else 1) for i in range(flash_frame))


def pattern(i: int, width: int, height: int, flash: bool = False) -> np.ndarray:
    if flash:
        return np.full((height, width, 3), 255, np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(1, width - 1) + 4 * i) % 256
    g = (y * 255 // max(1, height - 1)) % 256
    b = ((x // 20 + y // 20 + i // 4) % 2) * 160 + 40  # a moving checkerboard: hard edges
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def _write_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, duration_s: float, beep_s: float | None
) -> None:
    total = int(duration_s * SAMPLE_RATE)
    t = np.arange(total) / SAMPLE_RATE
    signal = np.zeros(total, np.float32)
    if beep_s is not None:
        on = (t >= beep_s) & (t < beep_s + 0.1)
        signal[on] = 0.5 * np.sin(2 * math.pi * 1000 * t[on])
    chunk = 1024
    for start in range(0, total, chunk):
        samples = np.tile(signal[start : start + chunk], (2, 1))  # [channels, n] planar
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


# -- measuring outputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    frames: list[np.ndarray]
    times_s: list[float]
    width: int
    height: int
    rotation: int
    duration_s: float
    audio_streams: int


def decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times, rotation = [], [], 0
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base))
            rotation = int(frame.rotation or 0)
        return Decoded(
            frames,
            times,
            stream.codec_context.width,
            stream.codec_context.height,
            rotation,
            float(container.duration or 0) / av.time_base,
            len(container.streams.audio),
        )


def audio_onset_s(path: Path, threshold: float = 0.1) -> float | None:
    """Time of the first audio sample louder than `threshold`."""
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = np.abs(frame.to_ndarray()).max(axis=0)
            loud = np.nonzero(samples > threshold)[0]
            if loud.size:
                return float(frame.pts * frame.time_base) + loud[0] / frame.sample_rate
    return None


def brightest_frame_s(decoded: Decoded) -> float:
    means = [f.mean() for f in decoded.frames]
    return decoded.times_s[int(np.argmax(means))]
