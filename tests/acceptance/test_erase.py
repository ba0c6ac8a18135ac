"""`frameq run -r erase --mask FILE`: what the user's mask covers removed from a real photo and
a real video, checked on the output files; masks of the wrong shape refused in one line."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.acceptance.oneline import one_line_error
from tests.conftest import run_cli

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev"
BOX = (slice(200, 300), slice(600, 700))  # a patch of lucia's street, right of her
REACH = 8  # the fill's mask is the user's grown by a few pixels (models/inpaint.py DILATE_PX)


def frames(count: int) -> list[np.ndarray]:
    with av.open(str(DAVIS / "video" / "lucia.mp4")) as container:
        decoded = zip(range(count), container.decode(video=0), strict=False)
        return [f.to_ndarray(format="rgb24") for _, f in decoded]


def write_mask(path: Path, mask: np.ndarray) -> Path:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


def grown(mask: np.ndarray, px: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    out = np.zeros_like(mask)
    out[max(0, ys.min() - px) : ys.max() + px + 1, max(0, xs.min() - px) : xs.max() + px + 1] = True
    return out


def test_what_the_mask_covers_is_filled_and_nothing_else_changes(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    rgb = frames(1)[0]
    src = tmp_path / "lucia.png"
    Image.fromarray(rgb).save(src)
    mask = np.zeros(rgb.shape[:2], bool)
    mask[BOX] = True
    full, half = write_mask(tmp_path / "mask.png", mask), write_mask(tmp_path / "half.png", mask[::2, ::2])
    outs = []
    for name, given in (("full", full), ("half", half)):  # a mask drawn on a half-size copy is scaled
        out = tmp_path / f"{name}.png"
        result = run_cli(frameq_env, "run", str(src), "-r", "erase", "--mask", str(given), "-o", str(out))
        assert result.returncode == 0, result.stderr
        outs.append(np.asarray(Image.open(out).convert("RGB"), dtype=float))
    changed = np.abs(outs[0] - rgb).max(-1) > 0
    assert changed[mask].mean() > 0.9  # the patch is redrawn
    assert not changed[~grown(mask, REACH)].any()  # and not one pixel outside it
    assert np.abs(outs[0] - outs[1]).max(-1)[~grown(mask, REACH)].max() == 0
    assert np.abs(outs[0] - outs[1])[mask].mean() < 3  # the scaled mask fills alike


def test_a_mask_video_erases_a_moving_patch_frame_by_frame(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    clip = frames(24)
    src, masks, out = tmp_path / "lucia.mp4", tmp_path / "masks.mp4", tmp_path / "out.mp4"
    boxes = []
    with av.open(str(src), "w") as video, av.open(str(masks), "w") as mask_video:
        streams = [c.add_stream("libx264", rate=Fraction(24)) for c in (video, mask_video)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
            stream.options = {"crf": "10"}
        for i, rgb in enumerate(clip):
            mask = np.zeros((480, 854, 3), np.uint8)
            box = (slice(200, 280), slice(560 + 8 * i, 640 + 8 * i))  # moves right 8 px a frame
            mask[box] = 255
            boxes.append(box)
            for container, stream, picture in ((video, streams[0], rgb), (mask_video, streams[1], mask)):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        for container, stream in zip((video, mask_video), streams, strict=True):
            container.mux(stream.encode(None))
    result = run_cli(frameq_env, "run", str(src), "-r", "erase", "--mask", str(masks), "-o", str(out))
    assert result.returncode == 0, result.stderr
    with av.open(str(src)) as a, av.open(str(out)) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0), strict=True))
    assert len(pairs) == 24
    for i, ((before, after), box) in enumerate(zip(pairs, boxes, strict=True)):
        diff = np.abs(after.to_ndarray(format="rgb24").astype(float) - before.to_ndarray(format="rgb24"))
        here = np.zeros((480, 854), bool)
        here[box] = True
        # this frame's patch is redrawn (H.264 both ways: a little noise elsewhere, no more) ...
        noise = diff[~grown(here, 24)].mean()
        assert diff[here].mean() > 4 * noise and noise < 4.0
        # ... and not the patch of a frame 12 later (or earlier): each frame has its own mask
        other = boxes[(i + 12) % 24]
        assert diff[other].mean() < 2 * noise


@pytest.mark.parametrize(
    ("mask_shape", "message"),
    [((480, 500), "the mask (500x480) does not fit the 854x480 picture"), (None, "not a mask")],
)
def test_a_mask_that_does_not_fit_is_refused_in_one_line(
    tmp_path: Path, frameq_env: dict[str, str], mask_shape: tuple[int, int] | None, message: str
) -> None:
    src, out = tmp_path / "lucia.png", tmp_path / "out.png"
    Image.fromarray(frames(1)[0]).save(src)
    if mask_shape is None:
        given = tmp_path / "notes.txt"
        given.write_text("remove the lamp post")
    else:
        given = write_mask(tmp_path / "wrong.png", np.ones(mask_shape, bool))
    result = run_cli(frameq_env, "run", str(src), "-r", "erase", "--mask", str(given), "-o", str(out))
    assert message in one_line_error(result)
    assert not out.exists()
    missing = run_cli(frameq_env, "run", str(src), "-r", "erase", "-o", str(out))
    assert "recipe erase needs --mask" in one_line_error(missing)


def test_a_batch_erases_one_mask_from_every_picture_and_redoes_them_when_it_changes(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    library, dest = tmp_path / "library", tmp_path / "erased"
    library.mkdir()
    for i, rgb in enumerate(frames(12)[::6]):
        Image.fromarray(rgb).save(library / f"shot{i}.png")
    mask = np.zeros((480, 854), bool)
    mask[BOX] = True
    given = write_mask(tmp_path / "logo.png", mask)
    command = ("batch", str(library), "-r", "erase", "--mask", str(given), "-o", str(dest))
    first = run_cli(frameq_env, *command)
    assert first.returncode == 0, first.stderr
    for i in range(2):
        before = np.asarray(Image.open(library / f"shot{i}.png"), dtype=float)
        after = np.asarray(Image.open(dest / f"shot{i}.png"), dtype=float)
        changed = np.abs(after - before).max(-1) > 0
        assert changed[mask].mean() > 0.9 and not changed[~grown(mask, REACH)].any()
    again = run_cli(frameq_env, *command)
    assert "2 items: 2 done" in again.stderr, again.stderr  # nothing to do
    moved = np.roll(mask, 100, axis=1)  # the same file name, another mask: every item is redone
    write_mask(given, moved)
    third = run_cli(frameq_env, *command)
    assert "2 items: 2 new" in third.stderr, third.stderr
    after = np.asarray(Image.open(dest / "shot0.png"), dtype=float)
    before = np.asarray(Image.open(library / "shot0.png"), dtype=float)
    assert (np.abs(after - before).max(-1) > 0)[moved].mean() > 0.9
