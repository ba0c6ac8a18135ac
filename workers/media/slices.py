"""Cut the source into one slice per segment, and its audio into one file, by stream copy.

Plan does this once, so a segment task downloads its own slice (a stateful stage also the slice
before, for warm-up), not the whole input, and assemble downloads only the audio.

Slices are NUT files: NUT takes any codec and keeps the source's own time base and timestamps,
so a slice's frames carry the very pts the plan cut at (Matroska would round them to ms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

from orchestrator.errors import InputError
from workers.media.video import KEEP_TIMESTAMPS

SLICE_EXT = "nut"


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
        with av.open(str(source)) as src, _Slices(out, src.streams.video[0]) as slices:
            current, tail = 0, False  # tail: leading pictures of the next cut still to come
            offset: int | None = None
            for packet in src.demux(src.streams.video[0]):
                if packet.size == 0:  # a demuxer's flush packet
                    continue
                if offset is None:  # decode times only grow: the first packet has the least
                    offset = max(0, -min(t for t in (packet.pts, packet.dts, 0) if t is not None))
                pts = packet.pts  # the source's: the cut points are in its ticks
                _shift(packet, offset, name)
                if current + 1 < len(starts) and packet.is_keyframe and (pts or 0) >= starts[current + 1]:
                    current, tail = current + 1, True
                    slices.close(current - 2)  # two cuts back: it gets no more packets
                    slices.write(current - 1, _copy(packet))  # K itself
                elif tail and pts is not None and pts < starts[current]:  # a leading picture
                    slices.write(current - 1, _copy(packet))
                elif tail:
                    tail = False
                    slices.close(current - 1)  # complete: at most two slices are open at once
                slices.write(current, packet)
            return offset or 0
    except av.FFmpegError as exc:
        raise InputError(name, f"corrupt video while cutting segments ({exc})") from None


class _Slices:
    """The slice files, each opened at its first packet and closed once complete, so a long
    video with thousands of segments does not hold thousands of files open."""

    def __init__(self, paths: list[Path], template: Any) -> None:
        self.paths, self.template = paths, template
        self.open: dict[int, tuple[Any, Any]] = {}

    def write(self, index: int, packet: av.Packet) -> None:
        if index not in self.open:
            container = av.open(
                str(self.paths[index]), "w", format=SLICE_EXT, container_options=KEEP_TIMESTAMPS
            )
            stream = container.add_stream_from_template(self.template)
            stream.time_base = self.template.time_base
            self.open[index] = (container, stream)
        container, stream = self.open[index]
        packet.stream = stream
        container.mux(packet)

    def close(self, index: int) -> None:
        if index in self.open:
            self.open.pop(index)[0].close()

    def __enter__(self) -> _Slices:
        return self

    def __exit__(self, *exc: object) -> None:
        for index in list(self.open):
            self.close(index)


def _shift(packet: av.Packet, offset: int, name: str) -> None:
    if offset:
        packet.pts = None if packet.pts is None else packet.pts + offset
        packet.dts = None if packet.dts is None else packet.dts + offset
    if (packet.pts or 0) < 0 or (packet.dts or 0) < 0:
        raise InputError(name, f"timestamps run backwards below the first frame's ({packet.pts})")


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
