"""media.plan: probe the input, cut it into segments, expand the recipe into tasks, and cut the
source into one slice per segment (and its audio apart), so no later task reads all of it."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from orchestrator.planning import Segment, cut_segments, expand
from orchestrator.recipes import get_recipe
from orchestrator.repository import Expansion
from orchestrator.store import audio_key, slice_key
from workers.media.probe import ImageInfo, probe
from workers.media.slices import cut_slices, extract_audio
from workers.runtime import Result, TaskContext


def plan(ctx: TaskContext) -> Result:
    job, params = ctx.job, ctx.params
    with ctx.store.reading(job.source_key) as path:
        info = probe(path, job.input_name, params.max_pixels)
        media = info.summary()
        stored: list[tuple[str, int]] = []  # objects written beside the plan (slices, audio)
        audio = None
        if isinstance(info, ImageInfo):
            kind, segments = "image", [Segment(0, 0, None, 1)]
        else:
            kind = "video"
            # A recipe that needs the whole video in one pass gets one segment (no keyframe cuts),
            # and so does a picked person: chosen on the first frame, followed to the last.
            one_pass = get_recipe(job.recipe).whole_video or params.person_at is not None
            keyframes = [] if one_pass else info.keyframe_pts
            segments = cut_segments(info.frame_pts, keyframes, info.time_base, params.segment_s)
            audio = audio_key(job.id, job.source_key) if info.audio else None
            stored, media["slice_offset"] = _slice(ctx, path, segments, audio)
    specs = expand(get_recipe(job.recipe), segments, kind, job.id, params, audio)
    expansion = Expansion(kind, media, sum(s.frames for s in segments), specs)
    return Result(expansion=expansion, also_stored=stored)


def _slice(
    ctx: TaskContext, source: Path, segments: list[Segment], audio: str | None
) -> tuple[list[tuple[str, int]], int]:
    """Write every segment's slice, and the audio, to the store; returns their (key, size) and
    what the slices added to every timestamp."""
    job = ctx.job
    keys = [slice_key(job.id, seg.index) for seg in segments]
    with ExitStack() as stack:
        paths = [stack.enter_context(ctx.store.writing(key)) for key in keys]
        offset = cut_slices(source, job.input_name, [seg.start_pts for seg in segments], paths)
        if audio is not None:
            keys.append(audio)
            paths.append(stack.enter_context(ctx.store.writing(keys[-1])))
            extract_audio(source, job.input_name, paths[-1])
        sizes = [path.stat().st_size for path in paths]  # before leaving: the store takes them then
    return list(zip(keys, sizes, strict=True)), offset
