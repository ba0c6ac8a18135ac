"""Images and directories of media through `frameq run`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_cli
from tests.media import decode, make_video, pattern


def test_image_with_exif_orientation_comes_out_upright(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a photo stored 120x80 (landscape) whose EXIF says "rotate 90° clockwise to view"
    stored = Image.fromarray(pattern(0, 120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: right-top
    src = tmp_path / "photo.jpg"
    stored.save(src, quality=95, exif=exif)
    out = tmp_path / "photo-cartoon.png"
    # When it is cartooned
    result = run_cli(frameq_env, "run", str(src), "-o", str(out))
    assert result.returncode == 0, result.stderr
    # Then the output is the upright (portrait) picture, restyled
    with Image.open(out) as image:
        assert image.size == (80, 120)
        assert image.getexif().get(0x0112) in (None, 1)
        restyled = np.asarray(image.convert("RGB"), dtype=float)
    upright = np.asarray(stored.transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.corrcoef(upright.mean(-1).ravel(), restyled.mean(-1).ravel())[0, 1] > 0.6
    assert np.abs(upright - restyled).mean() > 3


def test_webp_and_png_keep_size_and_format(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    for suffix, fmt in ((".webp", "WEBP"), (".png", "PNG")):
        src = tmp_path / f"in{suffix}"
        Image.fromarray(pattern(3, 65, 33)).save(src)
        out = tmp_path / f"out{suffix}"
        assert run_cli(frameq_env, "run", str(src), "-o", str(out)).returncode == 0
        with Image.open(out) as image:
            assert (image.format, image.size) == (fmt, (65, 33))


def test_directory_bad_file_fails_alone(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a folder with a video, an image in a subfolder, a corrupt video and a text file
    lib = tmp_path / "library"
    (lib / "stills").mkdir(parents=True)
    make_video(lib / "clip.mov", frames=20)
    Image.fromarray(pattern(1, 64, 48)).save(lib / "stills" / "a.jpg")
    (lib / "broken.mp4").write_bytes(b"\x00" * 5000)
    (lib / "readme.txt").write_text("not media")
    out = tmp_path / "out"
    # When the folder is processed
    result = run_cli(frameq_env, "run", str(lib), "-o", str(out))
    # Then the good files are done, mirrored under the output folder, and only the bad one failed
    assert result.returncode == 1
    assert len(decode(out / "clip.mov").frames) == 20  # a .mov stays a .mov
    assert (out / "stills" / "a.jpg").is_file()
    assert not (out / "broken.mp4").exists()
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "broken.mp4: not a video file or corrupt" in errors[0]
    assert errors[1] == "1 of 3 jobs failed"
    assert result.stdout.count("done ") == 2


def test_directory_outputs_that_would_collide_are_refused(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    lib = tmp_path / "library"
    lib.mkdir()
    make_video(lib / "clip.avi", audio=False, frames=5, flash_frame=None)  # AVI out: MP4
    make_video(lib / "clip.mp4", frames=5)
    result = run_cli(frameq_env, "run", str(lib), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "would overwrite that of" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_directory_mattes_that_would_collide_are_refused(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # clip.mov and clip.mkv keep their formats, but both mattes would be clip.matte.mp4
    lib = tmp_path / "library"
    lib.mkdir()
    make_video(lib / "clip.mov", audio=False, frames=5, flash_frame=None)
    make_video(lib / "clip.mkv", audio=False, frames=5, flash_frame=None)
    args = ("run", str(lib), "-o", str(tmp_path / "out"), "-r", "bg-blur")
    result = run_cli(frameq_env, *args, "--with-matte")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "clip.matte.mp4 would overwrite that of" in result.stderr
    assert not (tmp_path / "out").exists()


def test_outputs_keep_the_colour_profile_and_exif_unless_told(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    from PIL import ImageCms

    # Given a photo with an sRGB ICC profile, an artist in its EXIF, and an orientation
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x013B] = "Ada"  # Artist
    exif[0x0112] = 6
    src = tmp_path / "photo.jpg"
    Image.fromarray(pattern(2, 120, 80)).save(src, quality=95, exif=exif, icc_profile=srgb)
    for suffix in (".jpg", ".png", ".webp"):
        out = tmp_path / f"kept{suffix}"
        assert run_cli(frameq_env, "run", str(src), "-r", "cartoon", "-o", str(out)).returncode == 0
        # Then the output carries them, upright and saying so
        with Image.open(out) as image:
            assert image.info.get("icc_profile") == srgb, suffix
            assert image.getexif().get(0x013B) == "Ada" and 0x0112 not in image.getexif(), suffix
            assert image.size == (80, 120)
    # And with --strip-metadata no EXIF, with --srgb no profile (the colours converted to sRGB)
    out = tmp_path / "bare.jpg"
    assert run_cli(frameq_env, "run", str(src), "-o", str(out), "--strip-metadata", "--srgb").returncode == 0
    with Image.open(out) as image:
        assert "icc_profile" not in image.info and len(image.getexif()) == 0
    # And a profile that cannot be read fails its job, named
    broken = tmp_path / "broken-profile.jpg"
    Image.fromarray(pattern(2, 64, 48)).save(broken, icc_profile=b"not an icc profile at all")
    result = run_cli(frameq_env, "run", str(broken), "-o", str(tmp_path / "x.jpg"), "--srgb")
    assert result.returncode == 1 and "broken-profile.jpg: its colour profile cannot be read" in result.stderr
