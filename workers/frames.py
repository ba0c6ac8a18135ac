"""The frame loop every per-frame stage shares: decode a segment, map batches, encode.

A stage's handler supplies only `Frames`: `fn`, from a `Batch` to the batch of frames it makes,
and the warm-up it wants. A batch holds the
source's RGB frames (when the stage reads the source) and the frames of each earlier stage it
needs, in the order its recipe lists them, aligned frame for frame with the source: a portrait
composite gets the source, the matte and the styled frames together. A stage with state across
frames asks for a few frames of warm-up: the last frames of the previous segment go through
`fn` first, outputs dropped, so no seam shows where segments meet.

What the task writes, and where, is on its row (planned): `ctx.output_key`, `ctx.output_format`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain, islice, zip_longest

import av
import numpy as np

from orchestrator.errors import InputError
from orchestrator.formats import Format
from orchestrator.schema import Task
from workers.media.images import read_pixels, read_rgb, write_rgb
from workers.media.video import SegmentWriter, decoded_pixels, iter_all, iter_segment, source_ticks
from workers.pipeline import Behind, prefetch
from workers.runtime import Result, TaskContext


@dataclass(frozen=True)
class Batch:
    source: list[np.ndarray]  # RGB [H, W, 3] frames of the source; empty if the stage reads none
    inputs: list[list[np.ndarray]]  # per needed stage (recipe order): its frames of this batch
    times_s: list[float]  # presentation time of each frame (0 for an image)
    warmup: bool = False  # frames of the segment before, for state only: their results are dropped

    def __len__(self) -> int:
        return len(self.times_s)


FrameFn = Callable[[Batch], list[np.ndarray]]


@dataclass(frozen=True)
class Frames:
    """What a per-frame stage's handler makes: the function its batches go through, and how
    many frames of the previous segment warm its state up (0: it keeps none). `size`: the
    (width, height) of the frames it makes, when not the source's (a crop). `analyse`: a first
    pass over every frame of the segment before `fn` sees any, for a stage that must know them
    all first (the crop path: where the window is now depends on where the subject goes)."""

    fn: FrameFn
    warmup: int = 0
    size: tuple[int, int] | None = None
    analyse: Callable[[Batch], None] | None = None


# A per-frame stage's handler: its `Frames`, set up for this task. What it opens (a background
# video, a style file) it enters on `stack`, which stays open while the frames are made.
FramesHandler = Callable[[TaskContext, ExitStack], Frames]


def run_stage(ctx: TaskContext, handler: FramesHandler) -> Result:
    """A per-frame stage's task: its frames over this task's segment, or image."""
    with ExitStack() as stack:
        return map_frames(ctx, handler(ctx, stack))


# One decoded frame of every stream a stage reads: (pts, source rgb or None, inputs' frames).
_Row = tuple[int, np.ndarray | None, list[np.ndarray]]


def batched(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def map_frames(ctx: TaskContext, frames: Frames) -> Result:
    """Run the stage's frames over this task's segment (or image) and write its output where
    planned."""
    fn, warmup = frames.fn, frames.warmup
    needs: list[str] = ctx.task.params.get("inputs", [])
    by_stage = ctx.inputs() if needs else {}  # a source-only stage asks the database nothing
    parts = [next(t for t in by_stage[stage] if t.segment == ctx.task.segment) for stage in needs]
    reads_source = bool(ctx.task.params.get("source", True))
    if warmup and parts:
        raise ValueError(f"{ctx.task.name}: warm-up frames are taken from the source only")
    if ctx.job.kind == "image":
        return _map_image(ctx, frames, parts, reads_source)
    if frames.analyse is not None:
        if parts or warmup:
            raise ValueError(f"{ctx.task.name}: a first pass reads the source only, without warm-up")
        with ExitStack() as stack:
            source = _source_frames(ctx, stack, fn, 0, Fraction(ctx.job.media["time_base"]))
            rows = _rows([source], True, [], ctx.job.input_name, Fraction(ctx.job.media["time_base"]))
            for batch in batched(prefetch(rows, 2 * ctx.params.batch_frames), ctx.params.batch_frames):
                frames.analyse(_batch(batch, 0, Fraction(ctx.job.media["time_base"])))
                ctx.progress(0)  # no frame made yet, but a cancel stops the first pass too
    return _map_segment(ctx, fn, parts, reads_source, warmup, frames.size)


def _map_image(ctx: TaskContext, frames: Frames, parts: list[Task], reads_source: bool) -> Result:
    """An image planned stage by stage: only image jobs recorded before images became one task
    (image.run) come here, and they still finish after an upgrade."""
    source = []
    if reads_source:
        with ctx.store.reading(ctx.job.source_key) as src:
            source = [read_rgb(src, ctx.job.input_name)]
    inputs = []
    for part in parts:
        with ctx.store.reading(str(part.output_key)) as path:
            inputs.append(
                [read_pixels(path, str(part.output_key), Format.parse(str(part.output_format)).pixels)]
            )
    batch = Batch(source, inputs, [0.0])
    if frames.analyse is not None:
        frames.analyse(batch)
    (out,) = frames.fn(batch)
    with ctx.store.writing(ctx.output_key) as tmp:
        write_rgb(out, tmp, ".png")
        size = tmp.stat().st_size
    ctx.progress(1)
    return Result(size)


def _map_segment(
    ctx: TaskContext,
    fn: FrameFn,
    parts: list[Task],
    reads_source: bool,
    warmup: int,
    frame_size: tuple[int, int] | None = None,
) -> Result:
    job, task, media, params = ctx.job, ctx.task, ctx.job.media, ctx.params
    time_base = Fraction(media["time_base"])
    done = 0
    with ExitStack() as stack:
        tmp = stack.enter_context(ctx.store.writing(ctx.output_key))
        streams: list[Iterator[av.VideoFrame]] = []
        if reads_source:
            streams.append(_source_frames(ctx, stack, fn, warmup, time_base))
        layouts = []
        for part in parts:
            path = stack.enter_context(ctx.store.reading(str(part.output_key)))
            streams.append(iter_all(path, str(part.output_key)))
            layouts.append(decoded_pixels(Format.parse(str(part.output_format))))
        rows = _rows(streams, reads_source, layouts, job.input_name, time_base)
        with SegmentWriter(
            tmp,
            ctx.output_format,
            width=frame_size[0] if frame_size else media["width"],
            height=frame_size[1] if frame_size else media["height"],
            time_base=time_base,
            rate=Fraction(media["avg_rate"]),
            crf=params.crf,
            preset=params.preset,
        ) as writer:
            # Decoding runs ahead and encoding behind in their own threads (see pipeline.py).
            encoder: Behind[tuple[np.ndarray, int]] = Behind(
                lambda item: writer.write(*item), 2 * params.batch_frames
            )
            with encoder:
                for batch in batched(prefetch(rows, 2 * params.batch_frames), params.batch_frames):
                    outputs = fn(_batch(batch, len(parts), time_base))
                    for out, (pts, _, _) in zip(outputs, batch, strict=True):
                        encoder.put((out, pts))
                    done += len(batch)
                    ctx.progress(done)
        if done != task.frames_total:
            raise InputError(
                job.input_name,
                f"corrupt video: segment {task.segment} decoded {done} of {task.frames_total} frames",
            )
        size = tmp.stat().st_size
    return Result(size)


def _source_frames(
    ctx: TaskContext, stack: ExitStack, fn: FrameFn, warmup: int, time_base: Fraction
) -> Iterator[av.VideoFrame]:
    """This segment's frames from its own slice of the source; with `warmup`, the previous
    slice's last frames go through `fn` first."""
    task, name = ctx.task, ctx.job.input_name
    start, end = task.params["start_pts"], task.params["end_pts"]
    offset = ctx.job.media.get("slice_offset", 0)
    own = stack.enter_context(ctx.store.reading(task.params["slice_key"]))
    frames = iter_segment(own, name, start, end, time_base, offset)
    previous = task.params.get("previous_start_pts")
    if not warmup or previous is None:
        return frames
    before = stack.enter_context(ctx.store.reading(task.params["previous_slice_key"]))
    earlier = iter_segment(before, name, previous, start, time_base, offset)
    return _warmed(chain(earlier, frames), start, warmup, fn)


def _rows(
    streams: list[Iterator[av.VideoFrame]],
    reads_source: bool,
    layouts: list[str],
    name: str,
    time_base: Fraction,
) -> Iterator[_Row]:
    """Frame i of every stream together, checked to be the same instant: every stage's segment
    keeps the source's timestamps (in NUT, rescaled exactly to the source's ticks)."""
    for frames in zip_longest(*streams):
        if any(frame is None for frame in frames):
            raise InputError(name, "a stage's segment has fewer or more frames than the source's")
        ticks = [source_ticks(frame, time_base) for frame in frames]
        if len(set(ticks)) > 1:
            raise InputError(name, f"a stage's segment is out of step with the source at {ticks[0]}")
        own = list(frames[1:] if reads_source else frames)
        rgb = frames[0].to_ndarray(format="rgb24") if reads_source else None
        inputs = [frame.to_ndarray(format=layout) for frame, layout in zip(own, layouts, strict=True)]
        yield ticks[0], rgb, inputs


def _batch(rows: list[_Row], n_inputs: int, time_base: Fraction) -> Batch:
    return Batch(
        source=[rgb for _, rgb, _ in rows if rgb is not None],
        inputs=[[inputs[i] for _, _, inputs in rows] for i in range(n_inputs)],
        times_s=[float(pts * time_base) for pts, _, _ in rows],
    )


def _warmed(frames: Iterator[av.VideoFrame], start: int, count: int, fn: FrameFn) -> Iterator[av.VideoFrame]:
    """Frames from `start` on, after passing the last `count` frames before it through `fn`."""
    before: deque[av.VideoFrame] = deque(maxlen=count)
    warmed = False
    for frame in frames:
        if frame.pts is not None and frame.pts < start:  # iter_segment refuses pts None
            before.append(frame)
            continue
        if not warmed:
            warmed = True
            if before:
                rgb = [f.to_ndarray(format="rgb24") for f in before]
                fn(Batch(rgb, [], [float(f.time or 0.0) for f in before], warmup=True))
        yield frame
