"""Styles through the real CLI (embedded mode), outputs decoded and checked: the pretrained
styles and blends, a picture as the style, a user checkpoint, the options every style takes,
the composites of styled people and backgrounds, flicker and segment seams on real video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from frameq.samples import sample_clip
from models.transformer_net import TransformerNet
from tests.acceptance.test_recipes import person_photo, run_ok
from tests.conftest import run_cli
from tests.media import decode

CARPHONE = "carphone_pristine"  # a real person talking on a phone in a car, 176x144


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.float32)


def grey(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L")).astype(np.float32) / 255


def carphone_clip(path: Path, frames: int = 24) -> Path:
    """The first frames of the real carphone clip, re-encoded short (a keyframe every 8)."""
    with av.open(str(sample_clip(CARPHONE))) as inp, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        stream.options = {"crf": "16", "g": "8", "keyint_min": "8", "sc_threshold": "0"}
        for i, frame in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")))
        out.mux(stream.encode(None))
    return path


def test_a_pretrained_style_paints_the_image_and_strength_zero_keeps_it(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src = person_photo(tmp_path / "person.png")
    for args, name in (
        ((), "full.png"),
        (("--strength", "0"), "none.png"),
        (("--strength", "0.5"), "half.png"),
    ):
        run_ok(frameq_env, str(src), "-o", str(tmp_path / name), "-r", "style", "--style", "7", *args)
    original, full, half = read(src), read(tmp_path / "full.png"), read(tmp_path / "half.png")
    assert np.abs(full - original).mean() > 20  # a style changes a picture a lot
    assert np.abs(read(tmp_path / "none.png") - original).max() <= 1  # the original, to rounding
    assert np.abs(half - (original + full) / 2).max() <= 1.5  # halfway, by the pixel


def test_styles_differ_and_a_blend_lies_between_them(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "person.png")
    outs = {}
    for style in ("3", "12", "3:0.5,12:0.5"):
        outs[style] = tmp_path / f"s{style.replace(':', '_').replace(',', '-')}.png"
        run_ok(frameq_env, str(src), "-o", str(outs[style]), "-r", "style", "--style", style)
    a, b, mix = (read(outs[s]) for s in ("3", "12", "3:0.5,12:0.5"))
    assert np.abs(a - b).mean() > 10
    # The network blends its normalisation parameters, not its outputs: the blend is a style of
    # its own, nearer to each end than the ends are to each other.
    assert np.abs(mix - a).mean() < np.abs(b - a).mean() and np.abs(mix - b).mean() < np.abs(b - a).mean()


def test_preserve_colour_keeps_the_original_colours(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "person.png")
    run_ok(frameq_env, str(src), "-o", str(tmp_path / "styled.png"), "-r", "style", "--style", "5")
    run_ok(
        frameq_env,
        str(src),
        "-o",
        str(tmp_path / "kept.png"),
        "-r",
        "style",
        "--style",
        "5",
        "--preserve-colour",
    )

    def chroma(path: Path) -> np.ndarray:
        ycc = cv2.cvtColor(read(path).astype(np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
        return ycc[..., 1:]

    def luma(path: Path) -> np.ndarray:
        return cv2.cvtColor(read(path).astype(np.uint8), cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)

    original = chroma(src)
    assert (
        np.abs(chroma(tmp_path / "kept.png") - original).mean()
        < 0.4 * np.abs(chroma(tmp_path / "styled.png") - original).mean()
    )
    assert np.abs(luma(tmp_path / "kept.png") - luma(tmp_path / "styled.png")).mean() < 4  # styled brightness


def test_any_picture_is_a_style(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "person.png")
    painting = Path("../shared/data/davis-dev/images/swing/00000.jpg").resolve()
    out = tmp_path / "out.png"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "style", "--style", str(painting))
    assert read(out).shape == (144, 176, 3)
    assert np.abs(read(out) - read(src)).mean() > 10


def test_a_user_checkpoint_and_a_bad_one(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    torch.manual_seed(0)
    good = tmp_path / "mine.pth"
    torch.save(TransformerNet().state_dict(), good)  # the layout fast-neural-style saves
    src = person_photo(tmp_path / "person.png")
    run_ok(frameq_env, str(src), "-o", str(tmp_path / "out.png"), "-r", "style", "--style", str(good))
    assert read(tmp_path / "out.png").shape == (144, 176, 3)
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    result = run_cli(
        frameq_env, "run", str(src), "-o", str(tmp_path / "bad.png"), "-r", "style", "--style", str(bad)
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: ")
    assert "Traceback" not in result.stderr


def test_portrait_style_paints_the_people_and_keeps_the_background(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src = person_photo(tmp_path / "person.png")
    run_ok(frameq_env, str(src), "-o", str(tmp_path / "styled.png"), "-r", "style", "--style", "9")
    out = tmp_path / "portrait.png"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "portrait-style", "--style", "9", "--with-matte")
    alpha = grey(tmp_path / "portrait.matte.png")
    person, background = alpha > 0.98, alpha == 0
    assert person.mean() > 0.1 and background.mean() > 0.1
    original, styled, result = read(src), read(tmp_path / "styled.png"), read(out)
    assert np.abs(result - original)[background].max() <= 1  # the background untouched
    assert np.abs(result - styled)[person].mean() < 0.25 * np.abs(original - styled)[person].mean()


def test_style_background_keeps_the_people_and_paints_the_rest(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src = person_photo(tmp_path / "person.png")
    run_ok(frameq_env, str(src), "-o", str(tmp_path / "styled.png"), "-r", "style", "--style", "9")
    out = tmp_path / "bg.png"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "style-background", "--style", "9", "--with-matte")
    alpha = grey(tmp_path / "bg.matte.png")
    person, background = alpha == 1, alpha < 0.02
    original, styled, result = read(src), read(tmp_path / "styled.png"), read(out)
    assert np.abs(result - original)[person].max() <= 1
    assert np.abs(result - styled)[background].mean() < 0.25 * np.abs(original - styled)[background].mean()


def test_stencil_is_flat_tones_on_paper(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = person_photo(tmp_path / "person.png")
    out = tmp_path / "poster.png"
    run_ok(frameq_env, str(src), "-o", str(out), "-r", "stencil", "--background", "#ffffff", "--with-matte")
    alpha = grey(tmp_path / "poster.matte.png")
    result = read(out)
    assert np.abs(result[alpha == 0] - 255).max() <= 1  # plain white paper around the people

    # two or three flat tones: most of the person's pixels lie within a few levels of one of
    # the three commonest values (the steps between tones are soft, against flicker), which a
    # photograph's continuous tones do not
    def toned(rgb: np.ndarray) -> float:
        inside = rgb[alpha > 0.98].mean(axis=1).round()
        values, counts = np.unique(inside, return_counts=True)
        tones = values[np.argsort(counts)[-3:]]
        return float((np.min(np.abs(inside[:, None] - tones[None, :]), axis=1) <= 6).mean())

    assert toned(result) > 0.75 and toned(read(src)) < 0.5


def test_double_exposure_fills_the_silhouette_with_the_second_picture(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src = person_photo(tmp_path / "person.png")
    second = tmp_path / "stripes.png"
    stripes = np.zeros((144, 176, 3), np.uint8)
    stripes[:, ::16] = stripes[:, 1::16] = stripes[:, 2::16] = (20, 60, 160)
    stripes[stripes.sum(axis=2) == 0] = (230, 200, 40)
    Image.fromarray(stripes).save(second)
    out = tmp_path / "double.png"
    run_ok(
        frameq_env,
        str(src),
        "-o",
        str(out),
        "-r",
        "double-exposure",
        "--background",
        str(second),
        "--with-matte",
    )
    alpha = grey(tmp_path / "double.matte.png")
    result = read(out)
    assert result[alpha < 0.02].min() >= 250  # a white backdrop
    inside = result[alpha > 0.98]
    # the second picture's stripes show through inside the silhouette: blue columns stay bluer
    striped = np.zeros(alpha.shape, bool)
    striped[:, ::16] = striped[:, 1::16] = striped[:, 2::16] = True
    blue = (result[..., 2] - result[..., 0])[alpha > 0.98]
    assert blue[striped[alpha > 0.98]].mean() > blue[~striped[alpha > 0.98]].mean() + 20
    assert inside.mean() < 240


def test_background_kinds_and_style_options_are_checked_at_once(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    src = person_photo(tmp_path / "person.png")
    cases = [
        (("-r", "double-exposure", "--background", "#ff0000"), "must be image or video, not colour"),
        (("-r", "matte", "--style", "3"), "does not paint"),
        (("-r", "cartoon", "--background", "#ff0000"), "takes no --background"),
        (("-r", "style", "--style", "40"), "style index must be 0 to 25"),
    ]
    for args, message in cases:
        result = run_cli(frameq_env, "run", str(src), "-o", str(tmp_path / "x.png"), *args)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def warping_error(frames: list[np.ndarray], guide: list[np.ndarray]) -> float:
    """Mean |out_t - warp(out_t-1)| by the DIS flow of the input frames (a compact form of the
    benchmark's metric, here to compare two outputs of the same input)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    errors = []
    h, w = guide[0].shape[:2]
    grid = np.dstack(np.meshgrid(np.arange(w), np.arange(h))).astype(np.float32)
    for t in range(1, len(frames)):
        back = dis.calc(
            cv2.cvtColor(guide[t], cv2.COLOR_RGB2GRAY), cv2.cvtColor(guide[t - 1], cv2.COLOR_RGB2GRAY), None
        )
        warped = cv2.remap(frames[t - 1].astype(np.float32), grid + back, None, cv2.INTER_LINEAR)
        errors.append(np.abs(frames[t].astype(np.float32) - warped)[4:-4, 4:-4].mean())
    return float(np.mean(errors))


def test_video_styles_are_stabilised_and_segments_meet_without_a_seam(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    clip = carphone_clip(tmp_path / "carphone.mp4")
    runs = {  # lossless output (crf 0), so that the frames differ only where the styling does
        "plain": ("--no-stabilise", "--segment-s", "100", "--crf", "0"),
        "whole": ("--segment-s", "100", "--crf", "0"),
        "split": ("--segment-s", "0.25", "--crf", "0"),  # a segment every 8 frames
    }
    outputs = {}
    for name, args in runs.items():
        out = tmp_path / f"{name}.mp4"
        run_ok(frameq_env, str(clip), "-o", str(out), "-r", "style", "--style", "19", *args)
        outputs[name] = [f.astype(float) for f in decode(out).frames]
    source = decode(clip).frames
    assert all(len(frames) == 24 for frames in outputs.values())
    plain, whole, split = (warping_error(outputs[n], source) for n in ("plain", "whole", "split"))
    assert whole < 0.7 * plain and split < 0.7 * plain

    def apart(a: str, b: str, t: int) -> float:
        return float(np.abs(outputs[a][t] - outputs[b][t]).mean())

    # The second segment warms up on frames 0-7, the whole of what one pass has seen by then:
    # where it starts, it continues the unsplit run. The third warms up on 8-15 only, and one
    # pass's state from before frame 8 fades as strength^8 (0.95^8 = 0.66) where the flow holds:
    # closer to one pass than a fresh start is, but not the same.
    assert apart("split", "whole", 8) < 0.1 * apart("plain", "whole", 8)
    assert apart("split", "whole", 16) < 0.8 * apart("plain", "whole", 16)


def test_styles_lists_and_previews_every_style(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    listing = run_cli(frameq_env, "styles")
    assert listing.returncode == 0
    rows = listing.stdout.splitlines()
    assert any(r.startswith("25 ") for r in rows) and any(r.startswith("painterly") for r in rows)
    src = person_photo(tmp_path / "person.png")
    sheet = tmp_path / "sheet.png"
    result = run_cli(frameq_env, "styles", "preview", str(src), "-o", str(sheet), "--tile", "96")
    assert result.returncode == 0, result.stderr
    with Image.open(sheet) as image:
        width, height = image.size
    # the original and 30 styles, six to a row, each tile 96 high plus its label
    assert height == 6 * (96 + 22) and width == 6 * round(176 * 96 / 144)


@pytest.mark.parametrize("name", ["pencil", "posterise", "painterly", "cartoon"])
def test_builtin_styles_run_on_video(name: str, tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = carphone_clip(tmp_path / "carphone.mp4", frames=8)
    out = tmp_path / "out.mp4"
    run_ok(frameq_env, str(clip), "-o", str(out), "-r", "style", "--style", name)
    decoded = decode(out)
    assert len(decoded.frames) == 8
    assert np.abs(decoded.frames[3].astype(float) - decode(clip).frames[3]).mean() > 5
