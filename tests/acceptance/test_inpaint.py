"""`frameq run -r inpaint`: the people removed from a real photo, checked on the output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev"


def test_the_person_is_gone_and_the_rest_of_the_picture_untouched(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    frame, truth = DAVIS / "images" / "lucia" / "00000.jpg", DAVIS / "masks" / "lucia" / "00000.png"
    if not frame.exists():
        pytest.fail(f"the DAVIS development set is required: {frame} is missing")
    src, out = tmp_path / "lucia.png", tmp_path / "removed.png"
    with Image.open(frame) as image:
        image.convert("RGB").save(src)
    result = run_cli(frameq_env, "run", str(src), "-r", "inpaint", "-o", str(out))
    assert result.returncode == 0, result.stderr
    before = np.asarray(Image.open(src).convert("RGB"), dtype=float)
    after = np.asarray(Image.open(out).convert("RGB"), dtype=float)
    person = np.asarray(Image.open(truth).convert("L")) > 127
    changed = np.abs(after - before).max(-1) > 0
    # The person's pixels are replaced: most of them changed, and by a lot
    assert changed[person].mean() > 0.9
    assert np.abs(after - before)[person].mean() > 25
    # Far from the person nothing changed, bit for bit (only the mask is filled)
    ys, xs = np.nonzero(person)
    far = np.ones_like(person)
    far[max(0, ys.min() - 60) : ys.max() + 60, max(0, xs.min() - 60) : xs.max() + 60] = False
    assert not changed[far].any()
    # And the fill looks like the surroundings: its colour is near the ring around the person
    ring = np.zeros_like(person)
    ring[max(0, ys.min() - 20) : ys.max() + 20, max(0, xs.min() - 20) : xs.max() + 20] = True
    ring &= ~changed
    fill, around = after[person].mean(0), before[ring].mean(0)
    assert np.abs(fill - around).max() < 30, (fill, around)


def test_at_a_point_only_the_person_there_goes(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a picture of two people: the frame beside its mirror image
    frame, truth = DAVIS / "images" / "lucia" / "00000.jpg", DAVIS / "masks" / "lucia" / "00000.png"
    with Image.open(frame) as image, Image.open(truth) as mask:
        rgb = np.asarray(image.convert("RGB"))
        person = np.asarray(mask.convert("L")) > 127
    both = np.concatenate([rgb, rgb[:, ::-1]], axis=1)
    left, right = np.concatenate([person, 0 * person], 1), np.concatenate([0 * person, person[:, ::-1]], 1)
    src, out = tmp_path / "two.png", tmp_path / "one.png"
    Image.fromarray(both).save(src)
    ys, xs = np.nonzero(left)
    x, y = int(np.median(xs)), int(np.median(ys))
    # When the one on the left is picked
    result = run_cli(frameq_env, "run", str(src), "-r", "inpaint", "--at", f"{x},{y}", "-o", str(out))
    assert result.returncode == 0, result.stderr
    # Then she is gone, as far as the matte finds her (the same frameq's `matte` recipe), and
    # the other is untouched
    matte = tmp_path / "matte.png"
    assert run_cli(frameq_env, "run", str(src), "-r", "matte", "-o", str(matte)).returncode == 0
    found = np.asarray(Image.open(matte).convert("L")) >= 32
    after = np.asarray(Image.open(out).convert("RGB"), dtype=float)
    changed = np.abs(after - both).max(-1) > 0
    assert changed[found & left.astype(bool)].mean() > 0.95
    assert not changed[right.astype(bool)].any()
    # And a point on nothing, off the picture, or for a recipe that removes nothing, is refused
    grass = run_cli(frameq_env, "run", str(src), "-r", "inpaint", "--at", "700,100", "-o", str(out))
    assert grass.returncode == 1 and "nothing to remove at 700,100" in grass.stderr
    off = run_cli(frameq_env, "run", str(src), "-r", "inpaint", "--at", "5000,10", "-o", str(out))
    assert off.returncode == 1 and "outside the 1708x480 picture" in off.stderr
    other = run_cli(frameq_env, "run", str(src), "-r", "bg-blur", "--at", "1,1", "-o", str(out))
    assert other.returncode == 1 and "takes no point to remove at" in other.stderr
