"""Segment files: the planned format picks the codec; alpha only where the codec carries it;
intermediates are lossless."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from orchestrator.formats import Format, segment_format
from tests.media import pattern
from workers.media.video import SegmentWriter, decoded_pixels, iter_all

TIME_BASE = Fraction(1, 90000)


def write(path: Path, frames: int = 6, alpha: bool = False, width: int = 64, height: int = 48) -> None:
    codec = {"mp4": "h264", "mov": "prores", "webm": "vp9", "nut": "ffv1", "avi": "avi"}[path.suffix[1:]]
    fmt = Format(codec if codec in ("h264", "prores", "vp9", "ffv1") else "png", "rgba" if alpha else "rgb")
    size = {"width": width, "height": height}
    with SegmentWriter(
        path, fmt, **size, time_base=TIME_BASE, rate=Fraction(30), crf=20, preset="fast"
    ) as writer:
        for i in range(frames):
            rgb = pattern(i, width, height)
            pixels = np.dstack([rgb, np.full((height, width), 40 * i, np.uint8)]) if alpha else rgb
            writer.write(pixels, i * 3000)


def test_the_output_stage_takes_the_outputs_codec() -> None:
    def out(pixels: str, suffix: str) -> str:
        return str(segment_format("video", pixels, is_output=True, output_suffix=suffix))

    assert out("rgba", ".webm") == "vp9:rgba" and out("rgb", ".webm") == "vp9:rgb"
    assert out("rgba", ".mov") == "prores:rgba"
    assert out("rgb", ".mov") == out("rgb", ".mkv") == "h264:rgb"
    assert out("grey", ".mp4") == "h264:grey"  # the matte recipe's output


def test_intermediates_are_lossless_and_images_are_png() -> None:
    def between(pixels: str) -> str:
        return str(segment_format("video", pixels, is_output=False, output_suffix=".webm"))

    assert between("grey") == "ffv1:grey"
    assert between("rgb") == "x264rgb:rgb"
    assert str(segment_format("image", "grey", is_output=False, output_suffix=".jpg")) == "png:grey"


@pytest.mark.parametrize(
    ("fmt", "shape"), [("ffv1:grey", (48, 64)), ("x264rgb:rgb", (48, 64, 3)), ("ffv1:rgba", (48, 64, 4))]
)
def test_intermediate_segments_give_back_exactly_what_was_written(
    fmt: str, shape: tuple, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(5)]  # noise: nothing to smooth
    path = tmp_path / f"seg.{Format.parse(fmt).ext}"
    with SegmentWriter(
        path,
        Format.parse(fmt),
        width=64,
        height=48,
        time_base=TIME_BASE,
        rate=Fraction(30),
        crf=20,
        preset="fast",
    ) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, i * 3000)
    back = [f.to_ndarray(format=decoded_pixels(Format.parse(fmt))) for f in iter_all(path, "seg")]
    assert len(back) == len(frames)
    for a, b in zip(frames, back, strict=True):
        assert np.array_equal(a, b)


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
