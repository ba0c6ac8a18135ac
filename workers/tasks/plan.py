"""media.plan: probe the input, cut it into segments, expand the recipe into tasks."""

from __future__ import annotations

from orchestrator.planning import Segment, cut_segments, expand
from orchestrator.recipes import get_recipe
from orchestrator.repository import Expansion
from workers.media.probe import ImageInfo, probe
from workers.runtime import Result, TaskContext


def plan(ctx: TaskContext) -> Result:
    job, params = ctx.job, ctx.params
    with ctx.store.reading(job.source_key) as path:
        info = probe(path, job.input_name, params.max_pixels)
    if isinstance(info, ImageInfo):
        kind, segments = "image", [Segment(0, 0, None, 1)]
    else:
        kind = "video"
        segments = cut_segments(info.frame_pts, info.keyframe_pts, info.time_base, params.segment_s)
    specs = expand(get_recipe(job.recipe), segments, kind, job.id, params)
    return Result(expansion=Expansion(kind, info.summary(), sum(s.frames for s in segments), specs))
