"""The job-parameter rules the CLI, the API and batches share (orchestrator/params.py), and how
a point given as shown lands on stored frames (workers/media/shown.py)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.errors import ConfigError, InputError
from orchestrator.params import JobParams, PictureOptions, parse_point, parse_ratios, ratio_name
from workers.media.shown import stored_point


def test_one_ratio_or_several_each_once_in_order() -> None:
    assert parse_ratios("4:5") == ((4, 5),)
    assert parse_ratios(" 1:1, 9:16 ,4:5,1:1") == ((1, 1), (9, 16), (4, 5))
    assert [ratio_name(r) for r in parse_ratios("16:9,21:9")] == ["16x9", "21x9"]
    for bad in ("", ",", "1:0", "4:5,wide"):
        with pytest.raises(ConfigError, match="not W:H"):
            parse_ratios(bad)


def test_options_for_several_ratios_split_into_one_per_job() -> None:
    asked = PictureOptions(ratio=(1, 1), srgb=True, more_ratios=((4, 5), (9, 16)))
    each = asked.each_ratio()
    assert [p.ratio for p in each] == [(1, 1), (4, 5), (9, 16)]
    assert all(p.more_ratios == () and p.srgb for p in each)
    assert PictureOptions().each_ratio() == [PictureOptions()]


def test_points_and_new_fields_survive_the_stored_form() -> None:
    assert parse_point(" 12 , 340 ") == (12, 340)
    params = JobParams(".png", person_at=(10, 20), fine_edges=True, mask={"kind": "image", "key": "k"})
    assert JobParams.from_json(params.to_json()) == params


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_point_as_shown_is_the_stored_pixel_under_it(rotation: int) -> None:
    stored = np.arange(4 * 6).reshape(4, 6)  # every pixel its own value, 6 wide, 4 high
    shown = np.rot90(stored, rotation // 90)  # as a player turns it
    for y in range(shown.shape[0]):
        for x in range(shown.shape[1]):
            sx, sy = stored_point((x, y), 4, 6, rotation, "phone.mp4")
            assert stored[sy, sx] == shown[y, x]
    with pytest.raises(InputError, match=r"phone.mp4: point 9,0 is outside the \d+x\d+ picture"):
        stored_point((9, 0), 4, 6, rotation, "phone.mp4")
