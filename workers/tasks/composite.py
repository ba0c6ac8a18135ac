"""composite.*: a frame combined with its person matte (the stage's first input)."""

from __future__ import annotations

from contextlib import ExitStack
from functools import cache

import numpy as np
import torch

from models.composite import blur_background
from models.device import pick_device, to_tensor, to_uint8
from workers.frames import Batch, map_frames
from workers.media.background import Background
from workers.runtime import Result, TaskContext


@cache
def _device(name: str) -> torch.device:
    return pick_device(name)


def bg_blur(ctx: TaskContext) -> Result:
    device = _device(ctx.settings.device)

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        return to_uint8(blur_background(to_tensor(batch.source, device), to_tensor(mattes, device)))

    return map_frames(ctx, fn)


def cutout(ctx: TaskContext) -> Result:
    """The frame with the matte as its alpha channel (RGBA out)."""

    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        return [np.dstack([rgb, matte]) for rgb, matte in zip(batch.source, mattes, strict=True)]

    return map_frames(ctx, fn)


def bg_replace(ctx: TaskContext) -> Result:
    """People over a colour, an image, or a video (looped, by each frame's own time)."""
    device = _device(ctx.settings.device)
    spec = ctx.params.background
    if spec is None:
        raise ValueError(f"job {ctx.job.id}: bg-replace without a background")
    rotation = ctx.job.media.get("rotation", 0)  # images are read upright: none
    with ExitStack() as stack:
        path = stack.enter_context(ctx.store.reading(spec["key"])) if "key" in spec else None
        fitted: list[Background] = []  # made on the first batch, to the frames' own size

        @torch.inference_mode()
        def fn(batch: Batch) -> list:
            (mattes,) = batch.inputs
            if not fitted:
                height, width = batch.source[0].shape[:2]
                fitted.append(Background(spec, path, height, width, rotation))
            alpha = to_tensor(mattes, device)
            fg = to_tensor(batch.source, device)
            bg = to_tensor([fitted[0].at(t) for t in batch.times_s], device)
            return to_uint8(alpha * fg + (1 - alpha) * bg)

        return map_frames(ctx, fn)
