"""composite.*: a frame combined with its person matte (from the `matte` stage)."""

from __future__ import annotations

from contextlib import ExitStack
from fractions import Fraction
from functools import cache

import numpy as np
import torch

from models.composite import blur_background
from models.device import pick_device, to_tensor, to_uint8
from orchestrator.recipes import MATTE_STAGE
from workers.frames import map_frames_with
from workers.media.background import Background
from workers.runtime import Result, TaskContext


@cache
def _device(name: str) -> torch.device:
    return pick_device(name)


def bg_blur(ctx: TaskContext) -> Result:
    device = _device(ctx.settings.device)

    @torch.inference_mode()
    def fn(frames: list[np.ndarray], mattes: list[np.ndarray]) -> list[np.ndarray]:
        alpha = to_tensor(mattes, device)[:, :1]  # the matte is grey: any channel is the alpha
        return to_uint8(blur_background(to_tensor(frames, device), alpha))

    return map_frames_with(ctx, MATTE_STAGE, fn)


def cutout(ctx: TaskContext) -> Result:
    """The frame with the matte as its alpha channel (RGBA out)."""

    def fn(frames: list[np.ndarray], mattes: list[np.ndarray]) -> list[np.ndarray]:
        return [np.dstack([rgb, matte[:, :, :1]]) for rgb, matte in zip(frames, mattes, strict=True)]

    return map_frames_with(ctx, MATTE_STAGE, fn, alpha=True)


def bg_replace(ctx: TaskContext) -> Result:
    """People over a colour, an image, or a video (looped, by time), blended by the matte."""
    device = _device(ctx.settings.device)
    spec = ctx.param("background")
    media = ctx.job.media
    height, width = media["height"], media["width"]
    with ExitStack() as stack:
        path = stack.enter_context(ctx.store.reading(spec["key"])) if "key" in spec else None
        background = Background(spec, path, height, width)
        # Times of this segment's frames, from its first timestamp at the source's frame rate.
        start_s = float(ctx.task.params.get("start_pts", 0) * Fraction(media["time_base"]))
        step_s = 1.0 / float(Fraction(media["avg_rate"])) if media.get("avg_rate") else 0.0
        shown = 0

        @torch.inference_mode()
        def fn(frames: list[np.ndarray], mattes: list[np.ndarray]) -> list[np.ndarray]:
            nonlocal shown
            backs = [background.at(start_s + (shown + i) * step_s) for i in range(len(frames))]
            shown += len(frames)
            alpha = to_tensor(mattes, device)[:, :1]
            fg, bg = to_tensor(frames, device), to_tensor(backs, device)
            return to_uint8(alpha * fg + (1 - alpha) * bg)

        return map_frames_with(ctx, MATTE_STAGE, fn)
