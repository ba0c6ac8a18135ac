"""`frameq run -r crop --ratio W:H`: real photos cut to a ratio around their subject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli
from tests.media import make_video

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


def test_a_video_or_another_recipe_is_refused_with_its_reason(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=6)
    video = run_cli(frameq_env, "run", str(clip.path), "-r", "crop", "-o", str(tmp_path / "out.mp4"))
    assert video.returncode == 1 and "recipe crop takes images only" in video.stderr
    src, _ = photo(tmp_path, "lucia")
    other = run_cli(
        frameq_env, "run", str(src), "-r", "cartoon", "--ratio", "1:1", "-o", str(tmp_path / "o.png")
    )
    assert other.returncode == 1 and "takes no --ratio" in other.stderr
    bad = run_cli(frameq_env, "run", str(src), "-r", "crop", "--ratio", "wide", "-o", str(tmp_path / "o.png"))
    assert bad.returncode == 1 and "not W:H" in bad.stderr
