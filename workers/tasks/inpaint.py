"""inpaint.*: what a mask covers removed and filled in from its surroundings (models/inpaint.py)."""

from __future__ import annotations

from contextlib import ExitStack

from models.inpaint import MATTE_THRESHOLD, remove
from workers.frames import Batch, Frames
from workers.runtime import TaskContext


def people(ctx: TaskContext, stack: ExitStack) -> Frames:
    """The people gone: the matte (the stage's input) is the mask. Each frame on its own (a
    video's fill is not carried from frame to frame)."""

    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        return [
            remove(rgb, matte, threshold=MATTE_THRESHOLD)
            for rgb, matte in zip(batch.source, mattes, strict=True)
        ]

    return Frames(fn)
