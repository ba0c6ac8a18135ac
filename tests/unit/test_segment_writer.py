"""Segment files: the format follows the extension, alpha only where the codec carries it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.media import pattern
from workers.media.video import SegmentWriter, segment_ext

TIME_BASE = Fraction(1, 90000)


def write(path: Path, frames: int = 6, alpha: bool = False, width: int = 64, height: int = 48) -> None:
    size = {"width": width, "height": height}
    with SegmentWriter(
        path, **size, time_base=TIME_BASE, rate=Fraction(30), crf=20, preset="fast", alpha=alpha
    ) as writer:
        for i in range(frames):
            rgb = pattern(i, width, height)
            pixels = np.dstack([rgb, np.full((height, width), 40 * i, np.uint8)]) if alpha else rgb
            writer.write(pixels, i * 3000)


def test_the_output_stage_takes_the_outputs_codec() -> None:
    assert segment_ext(".webm", alpha=True) == segment_ext(".webm", alpha=False) == "webm"
    assert segment_ext(".mov", alpha=True) == "mov"
    assert segment_ext(".mov", alpha=False) == segment_ext(".mkv", alpha=False) == "mp4"


@pytest.mark.parametrize(("ext", "codec"), [("mp4", "h264"), ("webm", "vp9")])
def test_segments_keep_frames_and_timestamps(ext: str, codec: str, tmp_path: Path) -> None:
    path = tmp_path / f"seg.{ext}"
    write(path, width=65, height=49)  # odd sizes kept exactly
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec
        frames = list(container.decode(stream))
    assert [(f.width, f.height) for f in frames] == [(65, 49)] * 6
    assert [round(float(f.time), 3) for f in frames] == [round(i / 30, 3) for i in range(6)]


def test_vp9_alpha_travels_with_the_frames(tmp_path: Path) -> None:
    path = tmp_path / "seg.webm"
    write(path, alpha=True)
    with av.open(str(path)) as container:
        decoder = av.CodecContext.create("libvpx-vp9", "r")  # FFmpeg's own vp9 drops the alpha
        alphas = [
            f.to_ndarray(format="rgba")[..., 3].mean()
            for p in container.demux(video=0)
            for f in decoder.decode(p)
        ]
    assert np.allclose(alphas, [40 * i for i in range(6)], atol=2)


def test_webm_segments_are_bit_exact(tmp_path: Path) -> None:
    # Matroska would write a random segment id into every file: equal input, equal bytes
    write(tmp_path / "a.webm")
    write(tmp_path / "b.webm")
    assert (tmp_path / "a.webm").read_bytes() == (tmp_path / "b.webm").read_bytes()


@pytest.mark.parametrize(("name", "alpha"), [("seg.mp4", True), ("seg.mov", False), ("seg.avi", False)])
def test_formats_that_cannot_hold_the_frames_are_refused(name: str, alpha: bool, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segments"):
        write(tmp_path / name, alpha=alpha)
