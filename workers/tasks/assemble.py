"""media.assemble: join the output stage's segments and restore the source audio."""

from __future__ import annotations

from contextlib import ExitStack

from orchestrator.store import output_key
from workers.media.assemble import assemble_video
from workers.media.images import convert_image
from workers.runtime import Result, TaskContext


def assemble(ctx: TaskContext) -> Result:
    job = ctx.job
    suffix = ctx.param("output_suffix")
    key = output_key(job.id, suffix.lstrip("."))
    parts = ctx.inputs()[ctx.task.params["stage"]]
    with ExitStack() as stack:
        paths = [stack.enter_context(ctx.store.reading(str(part.output_key))) for part in parts]
        tmp = stack.enter_context(ctx.store.writing(key))
        if job.kind == "image":
            convert_image(paths[0], tmp, suffix)
        else:
            source = stack.enter_context(ctx.store.reading(job.source_key))
            assemble_video(paths, source, tmp, rotation=job.media.get("rotation", 0))
        size = tmp.stat().st_size
    return Result(key, size)
