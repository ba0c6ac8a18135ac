"""image.run: an image through every stage of its recipe in memory, then its outputs.

An image is one frame: planning it, storing each stage's PNG and assembling them would cost
more than the work (several transactions and store copies against tens of milliseconds of
model time). So one task does it all with the stages' own frame functions (the same
`Frames` the frame loop runs over a video segment), and writes the output, and any stage asked
for as an output of its own (the matte), straight in their formats.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import PurePosixPath

import numpy as np

from orchestrator.recipes import get_recipe
from orchestrator.repository import Expansion
from orchestrator.store import stage_output_key
from orchestrator.tasktypes import task_type
from workers.frames import Batch
from workers.media.images import Metadata, read_picture, save_output
from workers.media.probe import probe_image
from workers.runtime import Result, TaskContext, resolve


def run(ctx: TaskContext) -> Result:
    job, params = ctx.job, ctx.params
    recipe = get_recipe(job.recipe)
    with ctx.store.reading(job.source_key) as path:
        info = probe_image(path, job.input_name, params.max_pixels)
        rgb, metadata = read_picture(path, job.input_name, params.srgb)
    if params.strip_metadata:
        metadata = Metadata(metadata.icc, None)
    made: dict[str, np.ndarray] = {}
    with ExitStack() as stack:
        for stage in recipe.stages:
            frames = resolve(task_type(stage.task).handler)(ctx, stack)
            batch = Batch([rgb] if stage.source else [], [[made[need]] for need in stage.needs], [0.0])
            if frames.analyse is not None:
                frames.analyse(batch)
            (made[stage.name],) = frames.fn(batch)
    size = _write(ctx, made[recipe.output], ctx.output_key, metadata)
    also = [
        (key, _write(ctx, made[stage], key))
        for stage in params.also_outputs
        for key in [stage_output_key(job.id, stage, "image")]
    ]
    ctx.progress(1)
    return Result(size, expansion=Expansion("image", info.summary(), 1, []), also_stored=also)


def _write(ctx: TaskContext, pixels: np.ndarray, key: str, metadata: Metadata | None = None) -> int:
    with ctx.store.writing(key) as tmp:
        save_output(pixels, tmp, PurePosixPath(key).suffix, metadata)
        return tmp.stat().st_size
