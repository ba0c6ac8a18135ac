"""composite.*: a frame combined with its person matte (the stage's first input) and, for the
styled composites, the styled frames (its second)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from functools import cache

import numpy as np
import torch

from models.composite import blur_background
from models.composite import double_exposure as double_exposure_op
from models.composite import styled_background as styled_background_op
from models.composite import styled_people as styled_people_op
from models.device import pick_device, to_tensor, to_uint8
from models.posterise import stencil as stencil_op
from workers.frames import Batch, Frames
from workers.media.background import Background
from workers.runtime import TaskContext


@cache
def _device(name: str) -> torch.device:
    return pick_device(name)


def bg_blur(ctx: TaskContext, stack: ExitStack) -> Frames:
    device = _device(ctx.settings.device)

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        return to_uint8(blur_background(to_tensor(batch.source, device), to_tensor(mattes, device)))

    return Frames(fn)


def cutout(ctx: TaskContext, stack: ExitStack) -> Frames:
    """The frame with the matte as its alpha channel (RGBA out)."""

    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        return [np.dstack([rgb, matte]) for rgb, matte in zip(batch.source, mattes, strict=True)]

    return Frames(fn)


def bg_replace(ctx: TaskContext, stack: ExitStack) -> Frames:
    """People over a colour, an image, or a video (looped, by each frame's own time)."""
    device = _device(ctx.settings.device)
    backdrop = _backdrop(ctx, stack)

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        alpha = to_tensor(mattes, device)
        fg = to_tensor(batch.source, device)
        bg = to_tensor(backdrop(batch), device)
        return to_uint8(alpha * fg + (1 - alpha) * bg)

    return Frames(fn)


def _backdrop(ctx: TaskContext, stack: ExitStack) -> Callable[[Batch], list[np.ndarray]]:
    """The job's --background as frames for a batch: by each frame's own time, fitted to the
    frames' size and stored orientation (made on the first batch, when the size is known)."""
    spec = ctx.params.background
    if spec is None:
        raise ValueError(f"job {ctx.job.id}: {ctx.job.recipe} without a background")
    rotation = ctx.job.media.get("rotation", 0)  # images are read upright: none
    path = stack.enter_context(ctx.store.reading(spec["key"])) if "key" in spec else None
    fitted: list[Background] = []

    def frames(batch: Batch) -> list[np.ndarray]:
        if not fitted:
            height, width = batch.source[0].shape[:2]
            fitted.append(Background(spec, path, height, width, rotation))
        return [fitted[0].at(t) for t in batch.times_s]

    return frames


def styled_people(ctx: TaskContext, stack: ExitStack) -> Frames:
    """portrait-style: the styled people over the original frame."""
    return _with_styled(ctx, styled_people_op)


def styled_background(ctx: TaskContext, stack: ExitStack) -> Frames:
    """style-background: the original people over the styled frame."""
    return _with_styled(ctx, styled_background_op)


Composite = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _with_styled(ctx: TaskContext, op: Composite) -> Frames:
    """Source, matte and styled frames into `op(frames, styled, alpha)`."""
    device = _device(ctx.settings.device)

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        mattes, styled = batch.inputs
        frames, alpha = to_tensor(batch.source, device), to_tensor(mattes, device)
        return to_uint8(op(frames, to_tensor(styled, device), alpha))

    return Frames(fn)


def stencil(ctx: TaskContext, stack: ExitStack) -> Frames:
    """The people as flat tones on paper, or on the --background colour."""
    device = _device(ctx.settings.device)
    spec = ctx.params.background or {}

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        frames, alpha = to_tensor(batch.source, device), to_tensor(mattes, device)
        if "colour" in spec:
            r, g, b = (c / 255 for c in spec["colour"])
            out = stencil_op(frames, alpha, paper=(r, g, b), texture=False)
        else:
            out = stencil_op(frames, alpha)
        return to_uint8(out)

    return Frames(fn)


def double_exposure(ctx: TaskContext, stack: ExitStack) -> Frames:
    """The people's silhouette filled with the --background image or video (looped)."""
    device = _device(ctx.settings.device)
    second = _backdrop(ctx, stack)

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        frames, alpha = to_tensor(batch.source, device), to_tensor(mattes, device)
        return to_uint8(double_exposure_op(frames, to_tensor(second(batch), device), alpha))

    return Frames(fn)
