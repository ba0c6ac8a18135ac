"""`frameq run -r crop --ratio W:H`: real photos cut to a ratio around their subject."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.acceptance.oneline import one_line_error
from tests.conftest import run_cli
from tests.media import decode

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev"


def photo(tmp_path: Path, sequence: str) -> tuple[Path, np.ndarray]:
    frame = DAVIS / "images" / sequence / "00000.jpg"
    if not frame.exists():
        pytest.fail(f"the DAVIS development set is required: {frame} is missing")
    src = tmp_path / f"{sequence}.png"
    with Image.open(frame) as image:
        image.convert("RGB").save(src)
    with Image.open(DAVIS / "masks" / sequence / "00000.png") as mask:
        return src, np.asarray(mask.convert("L")) > 127


def located(crop: np.ndarray, whole: np.ndarray) -> tuple[int, int]:
    """Where the crop sits in the picture (it is an exact cut of a lossless PNG)."""
    h, w = crop.shape[:2]
    for y in range(whole.shape[0] - h + 1):
        for x in range(whole.shape[1] - w + 1):
            if np.array_equal(whole[y, x : x + 8], crop[0, :8]) and np.array_equal(
                whole[y : y + h, x : x + w], crop
            ):
                return x, y
    raise AssertionError("the output is not a cut of the input")


@pytest.mark.parametrize(
    ("sequence", "ratio", "size"), [("lucia", "9:16", (270, 480)), ("swing", "4:5", (384, 480))]
)
def test_the_crop_keeps_the_person(
    tmp_path: Path, frameq_env: dict[str, str], sequence: str, ratio: str, size: tuple[int, int]
) -> None:
    src, person = photo(tmp_path, sequence)
    out = tmp_path / "crop.png"
    result = run_cli(frameq_env, "run", str(src), "-r", "crop", "--ratio", ratio, "-o", str(out))
    assert result.returncode == 0, result.stderr
    whole = np.asarray(Image.open(src).convert("RGB"))
    crop = np.asarray(Image.open(out).convert("RGB"))
    assert (crop.shape[1], crop.shape[0]) == size
    x, y = located(crop, whole)
    kept = person[y : y + size[1], x : x + size[0]].sum() / person.sum()
    cx = (whole.shape[1] - size[0]) // 2
    centre = person[:, cx : cx + size[0]].sum() / person.sum()
    assert kept > 0.95, (kept, centre)  # bench/crop_quality.py compares it with a centre crop


def davis_clip(path: Path, sequences: list[tuple[str, int]]) -> list[np.ndarray]:
    """The first frames of DAVIS sequences one after the other (a cut between them), as H.264
    at 24 fps; returns the frames written."""
    frames = []
    for sequence, count in sequences:
        with av.open(str(DAVIS / "video" / f"{sequence}.mp4")) as video:
            for i, frame in enumerate(video.decode(video=0)):
                if i == count:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return frames


def offset(crop: np.ndarray, whole: np.ndarray) -> int:
    """The x where a (lossy) full-height crop sits in its frame: the best match of grey rows."""
    a, b = crop.mean(-1)[::8].astype(float), whole.mean(-1)[::8].astype(float)
    w = a.shape[1]
    return int(np.argmin([np.abs(b[:, x : x + w] - a).mean() for x in range(b.shape[1] - w + 1)]))


def test_a_video_is_cut_along_a_smooth_path_that_follows_the_person(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    if not (DAVIS / "video" / "lucia.mp4").exists():
        pytest.fail("the DAVIS development set is required")
    # Given a clip of two shots: lucia walking, then a cut to the swing
    src, out = tmp_path / "two-shots.mp4", tmp_path / "vertical.mp4"
    frames = davis_clip(src, [("lucia", 40), ("swing", 24)])
    # When it is cropped to 9:16
    result = run_cli(frameq_env, "run", str(src), "-r", "crop", "--ratio", "9:16", "-o", str(out))
    assert result.returncode == 0, result.stderr
    # Then every frame is there, at the even-sided 9:16 window of the frame's full height
    decoded = decode(out)
    assert len(decoded.frames) == len(frames)
    assert decoded.frames[0].shape[:2] == (480, 270)
    xs = [offset(crop, whole) for crop, whole in zip(decoded.frames, frames, strict=True)]
    # And within each shot the window moves smoothly (no jump of more than a few pixels), while
    # it may jump at the cut
    steps = [abs(b - a) for a, b in itertools.pairwise(xs)]
    assert max(steps[:39] + steps[40:]) <= 12, xs
    # And it keeps the person of the hand-made masks
    for i in (0, 20, 36):
        with Image.open(DAVIS / "masks" / "lucia" / f"{i:05d}.png") as mask:
            person = np.asarray(mask.convert("L")) > 127
        kept = person[:, xs[i] : xs[i] + 270].sum() / person.sum()
        assert kept > 0.9, (i, kept)


def test_another_recipe_or_a_bad_ratio_is_refused(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src, _ = photo(tmp_path, "lucia")
    other = run_cli(
        frameq_env, "run", str(src), "-r", "cartoon", "--ratio", "1:1", "-o", str(tmp_path / "o.png")
    )
    assert other.returncode == 1 and "takes no aspect ratio" in other.stderr
    bad = run_cli(frameq_env, "run", str(src), "-r", "crop", "--ratio", "wide", "-o", str(tmp_path / "o.png"))
    assert bad.returncode == 1 and "not W:H" in bad.stderr


def test_several_ratios_give_one_output_each_as_each_alone_would(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src, person = photo(tmp_path, "lucia")
    out = tmp_path / "crop.png"
    result = run_cli(frameq_env, "run", str(src), "-r", "crop", "--ratio", "1:1,4:5,9:16", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    whole = np.asarray(Image.open(src).convert("RGB"))
    for name, size in (("1x1", (480, 480)), ("4x5", (384, 480)), ("9x16", (270, 480))):
        crop = np.asarray(Image.open(tmp_path / f"crop.{name}.png").convert("RGB"))
        assert (crop.shape[1], crop.shape[0]) == size
        x, y = located(crop, whole)
        assert person[y : y + size[1], x : x + size[0]].sum() / person.sum() > 0.95
    alone = tmp_path / "alone.png"
    result = run_cli(frameq_env, "run", str(src), "-r", "crop", "--ratio", "4:5", "-o", str(alone))
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(alone)), np.asarray(Image.open(tmp_path / "crop.4x5.png")))
    # a batch cuts one ratio (a library is run once per ratio, each into its own folder)
    library = tmp_path / "library"
    library.mkdir()
    src.rename(library / src.name)
    dest = tmp_path / "cropped"
    batch = run_cli(frameq_env, "batch", str(library), "-r", "crop", "--ratio", "1:1,4:5", "-o", str(dest))
    assert "one aspect ratio a batch: run it once per ratio" in one_line_error(batch)


def test_a_video_stored_sideways_is_cut_as_upright(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given lucia walking as an upright clip, and as a phone stores it: turned a quarter, with
    # the display rotation that turns it back
    frames = davis_clip(tmp_path / "upright.mp4", [("lucia", 12)])
    sideways = tmp_path / "sideways.mp4"
    with av.open(str(sideways), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 480, 854, "yuv420p"
        stream.set_display_rotation(90)
        for rgb in frames:
            stored = np.ascontiguousarray(np.rot90(rgb, -1))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(stream.encode(None))
    # When both are cut to 9:16
    windows = []
    for src in (tmp_path / "upright.mp4", sideways):
        out = tmp_path / f"{src.stem}-9x16.mp4"
        result = run_cli(frameq_env, "run", str(src), "-r", "crop", "--ratio", "9:16", "-o", str(out))
        assert result.returncode == 0, result.stderr
        decoded = decode(out)
        windows.append([np.rot90(f, decoded.rotation // 90) for f in decoded.frames])
    # Then, as shown, both are 270x480 and sit at the same place of the frame
    for upright, turned, whole in zip(*windows, frames, strict=True):
        assert upright.shape[:2] == turned.shape[:2] == (480, 270)
        assert abs(offset(upright, whole) - offset(turned, whole)) <= 8
