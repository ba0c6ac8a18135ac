"""Cut the source into one slice per segment, and its audio into one file, by stream copy.

Plan does this once, so a segment task downloads its own slice (a stateful stage also the slice
before, for warm-up), not the whole input, and assemble downloads only the audio.

Slices are NUT files: NUT takes any codec and keeps the source's own time base and timestamps,
so a slice's frames carry the very pts the plan cut at (Matroska would round them to ms).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import av

from orchestrator.errors import InputError

SLICE_EXT = "nut"
# Timestamps exactly as the source has them: B-frames give the first packets a negative decode
# time, which the muxer would otherwise shift (moving every pts) or drop.
KEEP_TIMESTAMPS = {"avoid_negative_ts": "disabled"}


def cut_slices(source: Path, name: str, starts: list[int], out: list[Path]) -> int:
    """Write the video packets of segment i (from its keyframe `starts[i]` to the next
    segment's) into `out[i]`, reading the source once.

    A packet decodes only after the keyframe it follows, so the cut falls on keyframe packets in
    decode order. Pictures that follow the next keyframe K in decode order but are shown before
    it (leading pictures of an open GOP) belong to this segment: K and those are written to
    both slices, and each segment's reader drops the frames outside its span.

    NUT takes no negative timestamps (an MP4 whose edit list starts after its first frames has
    them): every timestamp is moved up by the returned offset, in the source's ticks, which a
    reader takes off again (`iter_segment`).
    """
    try:
        with ExitStack() as stack:
            src = stack.enter_context(av.open(str(source)))
            video = src.streams.video[0]
            outputs = [
                stack.enter_context(av.open(str(path), "w", format=SLICE_EXT, options=KEEP_TIMESTAMPS))
                for path in out
            ]
            streams = [o.add_stream_from_template(video) for o in outputs]
            for stream in streams:
                stream.time_base = video.time_base
            current, tail = 0, False  # tail: leading pictures of the next cut still to come
            offset: int | None = None
            for packet in src.demux(video):
                if packet.size == 0:  # a demuxer's flush packet
                    continue
                if offset is None:  # decode times only grow: the first packet has the least
                    offset = max(0, -min(t for t in (packet.pts, packet.dts, 0) if t is not None))
                pts = packet.pts  # the source's: the cut points are in its ticks
                _shift(packet, offset, name)
                if (
                    current + 1 < len(starts)
                    and packet.is_keyframe
                    and pts is not None
                    and pts >= starts[current + 1]
                ):
                    current, tail = current + 1, True
                    _mux(outputs[current - 1], streams[current - 1], _copy(packet))  # K itself
                elif tail and pts is not None and pts < starts[current]:  # a leading picture: shown before K
                    _mux(outputs[current - 1], streams[current - 1], _copy(packet))
                else:
                    tail = False
                _mux(outputs[current], streams[current], packet)
            return offset or 0
    except av.FFmpegError as exc:
        raise InputError(name, f"corrupt video while cutting segments ({exc})") from None


def _shift(packet: av.Packet, offset: int, name: str) -> None:
    if offset:
        packet.pts = None if packet.pts is None else packet.pts + offset
        packet.dts = None if packet.dts is None else packet.dts + offset
    if (packet.pts or 0) < 0 or (packet.dts or 0) < 0:
        raise InputError(name, f"timestamps run backwards below the first frame's ({packet.pts})")


def _mux(container: Any, stream: Any, packet: av.Packet) -> None:
    packet.stream = stream
    container.mux(packet)


def _copy(packet: av.Packet) -> av.Packet:
    """Muxing takes a packet's data over, so one written to two slices is copied first."""
    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


def extract_audio(source: Path, name: str, out: Path) -> bool:
    """Every audio track of the source, stream-copied into `out`. False when it has none."""
    try:
        with av.open(str(source)) as src:
            tracks = list(src.streams.audio)
            if not tracks:
                return False
            with av.open(str(out), "w") as dst:  # the container its name says
                copies = {t.index: dst.add_stream_from_template(t) for t in tracks}
                for packet in src.demux(*tracks):
                    if packet.size == 0:
                        continue
                    packet.stream = copies[packet.stream.index]
                    dst.mux(packet)
        return True
    except av.FFmpegError as exc:
        raise InputError(name, f"corrupt audio while copying it ({exc})") from None
