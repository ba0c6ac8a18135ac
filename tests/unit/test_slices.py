"""Slices of the source: each segment's frames, cut by stream copy, decode to exactly the frames
of that segment in the whole file (same pixels, same timestamps)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from orchestrator.planning import cut_segments
from tests.media import make_video, pattern
from workers.media.probe import VideoInfo, probe
from workers.media.slices import cut_slices, extract_audio
from workers.media.video import iter_segment


def assert_slices_match(
    src: Path, tmp_path: Path, segment_s: float = 0.4, max_size: float | None = 1.5
) -> None:
    info = probe(src, src.name, 1 << 30)
    assert isinstance(info, VideoInfo)
    segments = cut_segments(info.frame_pts, info.keyframe_pts, info.time_base, segment_s)
    assert len(segments) >= 2
    paths = [tmp_path / f"{seg.index:05d}.nut" for seg in segments]
    offset = cut_slices(src, src.name, [seg.start_pts for seg in segments], paths)
    for seg, path in zip(segments, paths, strict=True):
        got = list(iter_segment(path, "slice", seg.start_pts, seg.end_pts, info.time_base, offset))
        want = list(iter_segment(src, "whole", seg.start_pts, seg.end_pts))
        assert len(got) == len(want) == seg.frames
        assert [f.pts for f in got] == [f.pts for f in want]
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a.to_ndarray(format="rgb24"), b.to_ndarray(format="rgb24"))
    if max_size is not None:  # slices hold the source's packets, and a keyframe more each
        assert sum(p.stat().st_size for p in paths) < max_size * src.stat().st_size


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("vfr.mp4", {"vfr": True, "rotation": 90}),  # B-frames: the first decode times are negative
        ("vp9.webm", {"codec": "libvpx-vp9", "audio": False}),  # Matroska's 1 ms ticks
        ("h264.mkv", {}),
        ("10bit.mov", {"pix_fmt": "yuv420p10le"}),
    ],
)
def test_each_slice_decodes_to_its_segments_frames(name: str, options: dict, tmp_path: Path) -> None:
    src = tmp_path / name
    make_video(src, frames=60, gop=15, flash_frame=None, **options)
    assert_slices_match(src, tmp_path)


def test_open_gop_leading_pictures_stay_with_their_segment(tmp_path: Path) -> None:
    # B-frames after each keyframe that are shown before it, referring to the GOP before
    src = tmp_path / "open-gop.mp4"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.options = {"x264-params": "open-gop=1:keyint=12:min-keyint=12:scenecut=0:bframes=3"}
        for i in range(60):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pattern(i, 160, 96), format="rgb24")))
        container.mux(stream.encode(None))
    assert_slices_match(src, tmp_path)


def test_an_edit_list_that_starts_after_the_first_frames(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "whole.mp4", frames=45, gop=15, audio=False, flash_frame=None)
    src = tmp_path / "trimmed.mp4"
    with av.open(str(clip.path)) as whole, av.open(str(src), "w") as trimmed:
        stream = trimmed.add_stream_from_template(whole.streams.video[0])
        for packet in whole.demux(video=0):
            if packet.size:  # 5 frames (3000 ticks each) before zero: decoded, not shown
                packet.pts, packet.dts = packet.pts - 15000, packet.dts - 15000
                packet.stream = stream
                trimmed.mux(packet)
    assert_slices_match(src, tmp_path)


def test_the_audio_is_copied_packet_for_packet(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=30)
    out = tmp_path / "audio.mp4"
    assert extract_audio(clip.path, "in.mp4", out)
    with av.open(str(clip.path)) as a, av.open(str(out)) as b:
        assert not b.streams.video
        assert [bytes(p) for p in a.demux(audio=0) if p.size] == [
            bytes(p) for p in b.demux(audio=0) if p.size
        ]
    silent = make_video(tmp_path / "silent.mp4", frames=5, audio=False)
    assert not extract_audio(silent.path, "silent.mp4", tmp_path / "none.mp4")


def test_thousands_of_segments_do_not_hold_thousands_of_files_open(tmp_path: Path) -> None:
    import resource

    src = tmp_path / "every-frame-a-keyframe.mp4"
    make_video(src, frames=200, gop=1, width=32, height=32, audio=False, flash_frame=None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))  # far fewer than the 200 slices
    try:
        assert_slices_match(src, tmp_path, segment_s=0.001, max_size=None)  # one-frame slices
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
