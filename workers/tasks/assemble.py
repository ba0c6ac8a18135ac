"""media.assemble: join the output stage's segments and restore the source audio; write any
earlier stage asked for as an output of its own (the matte) beside it, without audio.

The job's terminal task: its completion marks the job done. Every key it writes was decided
when the job was planned.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import PurePosixPath

from orchestrator.formats import Format
from orchestrator.schema import Task
from workers.media.assemble import assemble_video, reencode_video
from workers.media.images import convert_image
from workers.runtime import Result, TaskContext


def assemble(ctx: TaskContext) -> Result:
    inputs = ctx.inputs()
    size = _join(ctx, inputs[ctx.task.params["stage"]], ctx.output_key)
    also = [
        (extra["key"], _write_extra(ctx, inputs[extra["stage"]], extra["key"], Format.parse(extra["format"])))
        for extra in ctx.task.params.get("also", ())
    ]
    return Result(size, also_stored=also)


def _join(ctx: TaskContext, parts: list[Task], key: str) -> int:
    """The output: segments stream-copied (they are in the output's codec), with the audio."""
    job = ctx.job
    with ExitStack() as stack:
        paths = [stack.enter_context(ctx.store.reading(str(part.output_key))) for part in parts]
        tmp = stack.enter_context(ctx.store.writing(key))
        if job.kind == "image":
            convert_image(paths[0], tmp, PurePosixPath(key).suffix)
        else:  # the audio tracks were copied out when the job was planned: only they are read
            audio_key = ctx.task.params.get("audio_key")
            audio = stack.enter_context(ctx.store.reading(audio_key)) if audio_key else None
            assemble_video(paths, audio, tmp, rotation=job.media.get("rotation", 0))
        return tmp.stat().st_size


def _write_extra(ctx: TaskContext, parts: list[Task], key: str, fmt: Format) -> int:
    """An intermediate stage as an output of its own: its lossless segments re-encoded into one
    file of `fmt` (an image's PNG is copied as it is)."""
    job, params = ctx.job, ctx.params
    with ExitStack() as stack:
        paths = [stack.enter_context(ctx.store.reading(str(part.output_key))) for part in parts]
        tmp = stack.enter_context(ctx.store.writing(key))
        if job.kind == "image":
            convert_image(paths[0], tmp, PurePosixPath(key).suffix)
        else:
            fmts = [Format.parse(str(part.output_format)) for part in parts]
            reencode_video(paths, fmts, tmp, fmt, job.media, crf=params.crf, preset=params.preset)
        return tmp.stat().st_size
