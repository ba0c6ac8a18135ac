"""Join encoded segments into one video and carry over the source's audio.

Segments hold the source's own timestamps, so joining is a stream copy: packets from every
segment in order, interleaved by time with the source's audio packets, copied unchanged when
the output container accepts the codec and re-encoded (AAC; Opus for WebM) when it does not.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
from av.audio.stream import AudioStream

from orchestrator.formats import Format
from workers.media.video import SegmentWriter, bitexact, decoded_pixels, iter_all, source_ticks

# Audio codecs each muxer takes as they are (checked with this FFmpeg); Matroska takes any.
COPYABLE_AUDIO = {
    ".mp4": {"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".m4v": {"aac", "alac", "ac3"},
    ".webm": {"opus", "vorbis"},
}
# Opus runs at 48 kHz (the rates it takes all divide 48000); AAC keeps the source's rate.
REENCODE_AUDIO = {".webm": ("libopus", 48000)}
# libopus takes only the Vorbis channel order for each channel count (5.1(side) or 4.0 are
# refused): the resampler remaps other layouts to these; more than 8 channels are downmixed.
OPUS_LAYOUTS = ("mono", "stereo", "3.0", "quad", "5.0", "5.1", "6.1", "7.1")


def audio_copyable(codec: str, suffix: str) -> bool:
    return suffix == ".mkv" or codec in COPYABLE_AUDIO.get(suffix, set())


def assemble_video(segments: list[Path], audio: Path | None, out: Path, rotation: int = 0) -> None:
    """The segments joined into `out`, with every audio track of the file `audio` (if any)."""
    with ExitStack() as stack:
        output = stack.enter_context(av.open(str(out), mode="w", container_options=bitexact(out)))
        inputs = [stack.enter_context(av.open(str(p))) for p in segments]
        tracks = list(stack.enter_context(av.open(str(audio))).streams.audio) if audio else []
        segment_video = inputs[0].streams.video[0]
        video_out = output.add_stream_from_template(segment_video)
        if segment_video.metadata.get("alpha_mode") == "1":
            video_out.metadata["alpha_mode"] = "1"  # WebM: the VP9 alpha travels beside each frame
        if rotation:
            video_out.set_display_rotation(rotation)
        feeds = [_video_packets(inputs, video_out)]
        suffix = out.suffix.lower()
        for track in tracks:
            if audio_copyable(track.codec_context.name, suffix):
                feeds.append(_copied(str(audio), track.index, output.add_stream_from_template(track)))
            else:
                codec, rate = REENCODE_AUDIO.get(suffix, ("aac", track.codec_context.sample_rate))
                encoded = cast(AudioStream, output.add_stream(codec, rate=rate))
                layout = track.codec_context.layout
                if codec == "libopus":
                    layout = av.AudioLayout(OPUS_LAYOUTS[min(layout.nb_channels, 8) - 1])
                encoded.layout = layout
                feeds.append(_reencoded(str(audio), track.index, encoded))
        for _, _, packet in heapq.merge(*feeds, key=lambda item: (item[0], item[1])):
            output.mux(packet)


def _video_packets(inputs: list[Any], stream: Any) -> Iterator[tuple[float, int, Any]]:
    """Every segment's packets in order; decode times kept strictly increasing across joins."""
    last_dts: int | None = None
    time_base = inputs[0].streams.video[0].time_base  # mux() rescales to the output's own
    for container in inputs:
        source = container.streams.video[0]
        if source.time_base != time_base:
            raise ValueError(f"segments differ in time base: {source.time_base} != {time_base}")
        for packet in container.demux(source):
            if packet.size == 0:
                continue
            dts = packet.dts if packet.dts is not None else packet.pts
            if last_dts is not None and dts <= last_dts:
                dts = last_dts + 1  # B-frame delay differs between segments: nudge, never reorder
            packet.dts = min(dts, packet.pts)
            last_dts = packet.dts
            packet.stream = stream
            yield float(packet.dts * packet.time_base), 0, packet


def _copied(path: str, index: int, stream: Any) -> Iterator[tuple[float, int, Any]]:
    """The source's audio packets, unchanged (own demuxer, so video and audio read apart)."""
    with av.open(path) as container:
        source = container.streams[index]
        for packet in container.demux(source):
            if packet.size == 0 or packet.dts is None:
                continue
            packet.stream = stream
            yield float(packet.dts * packet.time_base), 1, packet


def _reencoded(path: str, index: int, stream: Any) -> Iterator[tuple[float, int, Any]]:
    """Re-encode an audio stream the output container cannot hold as it is."""
    resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
    with av.open(path) as container:
        for frame in container.decode(container.streams[index]):
            if not isinstance(frame, av.AudioFrame):
                continue
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    yield float(packet.pts * packet.time_base), 1, packet
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                yield float(packet.pts * packet.time_base), 1, packet
        for packet in stream.encode(None):
            yield float(packet.pts * packet.time_base), 1, packet


def reencode_video(
    segments: list[Path], formats: list[Format], out: Path, fmt: Format, media: dict, *, crf: int, preset: str
) -> None:
    """Decode segments in order and encode them as one video of `fmt`, timestamps kept (for a
    stage whose segments travel losslessly between stages but are wanted as a small file).

    Intermediate segments may tick in another time base than the source's (Matroska counts
    milliseconds): each frame's time is taken back to the source's ticks."""
    time_base = Fraction(media["time_base"])
    with SegmentWriter(
        out,
        fmt,
        width=media["width"],
        height=media["height"],
        time_base=time_base,
        rate=Fraction(media["avg_rate"]),
        crf=crf,
        preset=preset,
        rotation=media.get("rotation", 0),
    ) as writer:
        for path, segment_format in zip(segments, formats, strict=True):
            for frame in iter_all(path, path.name):
                pixels = frame.to_ndarray(format=decoded_pixels(segment_format))
                writer.write(pixels, source_ticks(frame, time_base))
