"""--background values and the backgrounds made of them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from orchestrator.background import parse_background
from orchestrator.errors import InputError
from workers.media.background import Background, cover


def test_colours_in_every_spelling() -> None:
    assert parse_background("#00B140") == {"colour": [0, 177, 64]}
    assert parse_background("0,177,64") == {"colour": [0, 177, 64]}
    assert parse_background("green") == {"colour": [0, 177, 64]}


@pytest.mark.parametrize("value", ["#12345", "300,0,0", "nothing.txt", "teal-ish"])
def test_what_is_no_background_is_named(value: str) -> None:
    with pytest.raises(InputError, match="not a background"):
        parse_background(value)


def test_a_missing_background_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        parse_background(str(tmp_path / "beach.jpg"))


def test_cover_fills_the_frame_and_keeps_the_middle() -> None:
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 150:250] = 255  # a white band in the middle
    out = cover(wide, 100, 100)
    assert out.shape == (100, 100, 3) and out.mean() == 255


def test_image_background_is_fitted(tmp_path: Path) -> None:
    path = tmp_path / "bg.png"
    Image.fromarray(np.full((50, 80, 3), 90, np.uint8)).save(path)
    background = Background({"kind": "image"}, path, 144, 176)
    assert background.at(0.0).shape == (144, 176, 3) and background.at(5.0).mean() == 90


def test_video_background_plays_by_time_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "bg.mp4"
    with av.open(str(path), "w") as container:  # 10 frames at 10 fps, grey levels 0, 25, ... 225
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv444p"
        stream.options = {"crf": "0"}
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 25, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    background = Background({"kind": "video"}, path, 16, 16)
    levels = [round(float(background.at(t).mean()) / 25) for t in (0.0, 0.31, 0.95, 1.02, 1.5)]
    assert levels == [0, 3, 9, 0, 5]  # 1.02 s is past the end: the video starts again
