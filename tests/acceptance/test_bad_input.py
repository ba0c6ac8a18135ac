"""Bad input fails its own job with a one-line reason naming the file; nothing else is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.recipes import RECIPES
from tests.conftest import run_cli
from tests.media import make_video


def truncated(tmp_path: Path) -> Path:
    clip = make_video(tmp_path / "whole.mp4", frames=30)
    data = clip.path.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def faststart_truncated(tmp_path: Path) -> Path:
    """Index at the front, frames cut off at the end: the index promises missing frames."""
    import av

    clip = make_video(tmp_path / "whole.mp4", frames=60)
    moved = tmp_path / "faststart.mp4"
    with av.open(str(clip.path)) as src, av.open(str(moved), "w", options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    path = tmp_path / "cut.mp4"
    path.write_bytes(moved.read_bytes()[: moved.stat().st_size * 2 // 3])
    return path


def unknown_codec(tmp_path: Path) -> Path:
    """A Matroska file whose video codec id no decoder knows."""
    clip = make_video(tmp_path / "vp9.mkv", codec="libvpx-vp9", audio=False, frames=5, flash_frame=None)
    data = clip.path.read_bytes().replace(b"V_VP9", b"V_QQQ", 1)
    path = tmp_path / "unknown.mkv"
    path.write_bytes(data)
    return path


def unknown_audio_codec(tmp_path: Path) -> Path:
    """A Matroska file whose audio codec id no decoder knows."""
    clip = make_video(tmp_path / "aac.mkv", frames=5)
    path = tmp_path / "unknown-audio.mkv"
    path.write_bytes(clip.path.read_bytes().replace(b"A_AAC", b"A_QQQ", 1))
    return path


def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("these are not frames\n" * 100)
    return path


def empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.mp4"
    path.touch()
    return path


def bad_image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return path


def audio_only(tmp_path: Path) -> Path:
    import av
    import numpy as np

    path = tmp_path / "song.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


CASES = [
    (text_file, "not a video file or corrupt"),
    (truncated, "corrupt"),
    (faststart_truncated, "truncated video"),
    (empty, "empty file"),
    (lambda tmp: tmp / "missing.mp4", "no such file"),
    (unknown_codec, "unsupported video codec"),
    (unknown_audio_codec, "unsupported audio codec"),
    (bad_image, "not a readable image"),
    (audio_only, "no video stream"),
]


@pytest.mark.parametrize(("make", "problem"), CASES, ids=[c[1] for c in CASES])
def test_bad_input_fails_its_job_with_a_clear_reason(
    make, problem: str, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    path = make(tmp_path)
    result = run_cli(frameq_env, "run", str(path), "-o", str(tmp_path / f"out{path.suffix}"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in result.stderr
    jobs = run_cli(frameq_env, "jobs").stdout
    assert "failed" in jobs and str(path) in jobs


def test_resolution_over_the_limit(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "big.mp4", width=320, height=240, frames=5)
    env = {**frameq_env, "FRAMEQ_MAX_PIXELS": "10000"}
    result = run_cli(env, "run", str(clip.path), "-o", str(tmp_path / "out.mp4"))
    assert result.returncode == 1
    assert "320x240 is over the limit of 10000 pixels" in result.stderr


def test_bad_settings_and_recipes_are_one_line_errors(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5)
    result = run_cli(frameq_env, "run", str(clip.path), "-o", str(tmp_path / "o.mp4"), "-r", "nope")
    known = ", ".join(sorted(RECIPES))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: unknown recipe 'nope' (known: {known})"
    result = run_cli({**frameq_env, "FRAMEQ_CRF": "x"}, "run", str(clip.path), "-o", str(tmp_path / "o.mp4"))
    assert result.returncode == 1 and result.stderr.strip() == "error: FRAMEQ_CRF must be an integer, got 'x'"
    result = run_cli(frameq_env, "run", str(clip.path), "-o", str(tmp_path / "o.png"))
    assert result.returncode == 1 and "a video output must end in .mp4" in result.stderr


def test_interrupt_cancels_the_job(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    clip = make_video(tmp_path / "long.mp4", width=640, height=480, frames=300, gop=30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "frameq", "run", str(clip.path), "-o", str(tmp_path / "o.mp4")],
        env=frameq_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while "running" not in run_cli(frameq_env, "jobs").stdout:  # wait until it has started
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: 1 job(s) cancelled" in stderr and "Traceback" not in stderr
    assert "cancelled" in run_cli(frameq_env, "jobs").stdout
