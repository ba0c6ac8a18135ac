"""The frame loop every per-frame stage shares: decode a segment, map batches, encode.

A stage supplies only `fn`, from a batch of RGB frames to a batch of RGB frames; a stage
that needs an earlier stage's frames of the same segment (a composite needs the matte) gets
them beside the source's, batch for batch. A stage with state across frames asks for a few
frames of warm-up: the last frames of the previous segment go through `fn` first, outputs
dropped, so no seam shows where segments meet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from fractions import Fraction
from itertools import islice

import av
import numpy as np

from orchestrator.errors import InputError
from orchestrator.recipes import get_recipe
from workers.media.images import read_rgb, write_rgb
from workers.media.video import SegmentWriter, iter_all, iter_segment, segment_ext
from workers.pipeline import Behind, prefetch
from workers.runtime import Result, TaskContext

FrameFn = Callable[[list[np.ndarray]], list[np.ndarray]]
PairFn = Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]


def batched(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def map_frames(ctx: TaskContext, fn: FrameFn, warmup: int = 0) -> Result:
    if ctx.job.kind == "image":
        return _map_image(ctx, lambda frames, _: fn(frames))
    return _map_segment(ctx, lambda frames, _: fn(frames), warmup=warmup, warm=fn)


def map_frames_with(ctx: TaskContext, stage: str, fn: PairFn, alpha: bool = False) -> Result:
    """Like map_frames, with `stage`'s output frames of this segment as fn's second list.

    With `alpha`, fn returns RGBA frames, kept as PNG or as segments with alpha (ProRes 4444,
    or VP9 for a WebM output).
    """
    (part,) = [t for t in ctx.inputs()[stage] if t.segment == ctx.task.segment]
    if ctx.job.kind == "image":
        return _map_image(ctx, fn, str(part.output_key))
    return _map_segment(ctx, fn, companion=str(part.output_key), alpha=alpha)


def _map_image(ctx: TaskContext, fn: PairFn, companion: str | None = None) -> Result:
    key = ctx.segment_key("png")  # lossless between stages
    with ctx.store.reading(ctx.job.source_key) as src:
        rgb = read_rgb(src, ctx.job.input_name)
    other = []
    if companion is not None:
        with ctx.store.reading(companion) as path:
            other = [read_rgb(path, companion)]
    (out,) = fn([rgb], other)
    with ctx.store.writing(key) as tmp:
        write_rgb(out, tmp, ".png")
        size = tmp.stat().st_size
    ctx.progress(1)
    return Result(key, size)


def _map_segment(
    ctx: TaskContext,
    fn: PairFn,
    *,
    companion: str | None = None,
    warmup: int = 0,
    warm: FrameFn | None = None,
    alpha: bool = False,
) -> Result:
    job, task, media = ctx.job, ctx.task, ctx.job.media
    is_output = get_recipe(job.recipe).output == task.stage
    key = ctx.segment_key(segment_ext(ctx.param("output_suffix"), alpha) if is_output else "mp4")
    done = 0
    with ExitStack() as stack:
        src = stack.enter_context(ctx.store.reading(job.source_key))
        tmp = stack.enter_context(ctx.store.writing(key))
        other = stack.enter_context(ctx.store.reading(companion)) if companion else None
        with SegmentWriter(
            tmp,
            width=media["width"],
            height=media["height"],
            time_base=Fraction(media["time_base"]),
            rate=Fraction(media["avg_rate"]),
            crf=ctx.param("crf"),
            preset=ctx.param("preset"),
            alpha=alpha,
        ) as writer:
            start, end = task.params["start_pts"], task.params["end_pts"]
            previous = task.params.get("previous_start_pts")
            if warmup and warm is not None and previous is not None:
                frames = _warmed(iter_segment(src, job.input_name, previous, end), start, warmup, warm)
            else:
                frames = iter_segment(src, job.input_name, start, end)
            decoded: Iterator[tuple[np.ndarray, int, np.ndarray | None]] = (
                (frame.to_ndarray(format="rgb24"), int(frame.pts or 0), None) for frame in frames
            )
            if other is not None:
                companions = (f.to_ndarray(format="rgb24") for f in iter_all(other, str(companion)))
                decoded = ((rgb, pts, c) for (rgb, pts, _), c in zip(decoded, companions, strict=True))
            batch_frames = ctx.param("batch_frames")
            # Decoding runs ahead and encoding behind in their own threads (see pipeline.py).
            encoder: Behind[tuple[np.ndarray, int]] = Behind(
                lambda item: writer.write(*item), 2 * batch_frames
            )
            with encoder:
                for batch in batched(prefetch(decoded, 2 * batch_frames), batch_frames):
                    outputs = fn([rgb for rgb, _, _ in batch], [c for _, _, c in batch if c is not None])
                    for out, (_, pts, _) in zip(outputs, batch, strict=True):
                        encoder.put((out, pts))
                    done += len(batch)
                    ctx.progress(done)
        if done != task.frames_total:
            raise InputError(
                job.input_name,
                f"corrupt video: segment {task.segment} decoded {done} of {task.frames_total} frames",
            )
        size = tmp.stat().st_size
    return Result(key, size)


def _warmed(
    frames: Iterator[av.VideoFrame], start: int, count: int, warm: FrameFn
) -> Iterator[av.VideoFrame]:
    """Frames from `start` on, after passing the last `count` frames before it through `warm`."""
    before: deque[av.VideoFrame] = deque(maxlen=count)
    warmed = False
    for frame in frames:
        if frame.pts is not None and frame.pts < start:  # iter_segment refuses pts None
            before.append(frame)
            continue
        if not warmed:
            warmed = True
            if before:
                warm([f.to_ndarray(format="rgb24") for f in before])
        yield frame
