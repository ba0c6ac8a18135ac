"""media.assemble: join the output stage's segments and restore the source audio; join any
earlier stage asked for as an output of its own (the matte) the same way, without audio."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import PurePosixPath

from orchestrator.schema import Task
from orchestrator.store import output_key, stage_output_key
from workers.media.assemble import assemble_video
from workers.media.images import convert_image
from workers.runtime import Result, TaskContext


def assemble(ctx: TaskContext) -> Result:
    job = ctx.job
    suffix = ctx.param("output_suffix")
    inputs = ctx.inputs()
    result = _join(ctx, inputs[ctx.task.params["stage"]], output_key(job.id, suffix.lstrip(".")), audio=True)
    also = [
        _join(ctx, inputs[stage], stage_output_key(job.id, stage, str(job.kind)), audio=False)
        for stage in ctx.task.params.get("also", ())
    ]
    return replace(result, also_stored=[(str(r.output_key), r.size_bytes) for r in also])


def _join(ctx: TaskContext, parts: list[Task], key: str, audio: bool) -> Result:
    job = ctx.job
    with ExitStack() as stack:
        paths = [stack.enter_context(ctx.store.reading(str(part.output_key))) for part in parts]
        tmp = stack.enter_context(ctx.store.writing(key))
        if job.kind == "image":
            convert_image(paths[0], tmp, PurePosixPath(key).suffix)
        else:
            source = stack.enter_context(ctx.store.reading(job.source_key))
            assemble_video(paths, source, tmp, rotation=job.media.get("rotation", 0), audio=audio)
        size = tmp.stat().st_size
    return Result(key, size)
