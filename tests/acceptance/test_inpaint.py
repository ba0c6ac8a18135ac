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
