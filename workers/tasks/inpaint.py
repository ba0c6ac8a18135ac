"""inpaint.*: what a mask covers removed and filled in from its surroundings (models/inpaint.py)."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import torch
import torch.nn.functional as F

from models.device import to_tensor
from models.inpaint import MATTE_THRESHOLD, region_at, remove
from models.saliency import work_size
from orchestrator.errors import InputError
from workers.frames import Batch, Frames
from workers.media.masks import Masks
from workers.media.shown import stored_point
from workers.runtime import TaskContext
from workers.tasks.crop import saliency_model

OBJECT_THRESHOLD = 0.5  # U²-Netp's mask is a probability: an object pixel is more likely than not


def people(ctx: TaskContext, stack: ExitStack) -> Frames:
    """The people gone: the matte (the stage's input) is the mask. With `--at X,Y` only what is
    under the point: the person there, else the salient object there. Each frame on its own (a
    video's fill is not carried from frame to frame)."""
    at, name = ctx.params.remove_at, ctx.job.input_name

    def fn(batch: Batch) -> list:
        (mattes,) = batch.inputs
        out = []
        for rgb, matte in zip(batch.source, mattes, strict=True):
            mask = matte >= MATTE_THRESHOLD
            if at is not None:
                # given in the pixels a player shows (images are read upright: no rotation)
                height, width = rgb.shape[:2]
                stored = stored_point(at, height, width, ctx.job.media.get("rotation", 0), name)
                mask = _under(ctx, rgb, mask, stored, name, at)
            out.append(remove(rgb, mask))
        return out

    return Frames(fn)


def masked(ctx: TaskContext, stack: ExitStack) -> Frames:
    """erase: what the job's --mask covers gone, each frame by the mask of its time."""
    spec = ctx.params.mask
    if spec is None:
        raise ValueError(f"job {ctx.job.id}: {ctx.job.recipe} without a mask")
    path = stack.enter_context(ctx.store.reading(spec["key"]))
    rotation = ctx.job.media.get("rotation", 0)  # images are read upright: none
    fitted: list[Masks] = []

    def fn(batch: Batch) -> list:
        if not fitted:  # on the first batch, when the frames' size is known
            height, width = batch.source[0].shape[:2]
            try:
                fitted.append(Masks(spec, path, height, width, rotation))
            except ValueError as exc:
                raise InputError(ctx.job.input_name, str(exc)) from None
        return [remove(rgb, fitted[0].at(t)) for rgb, t in zip(batch.source, batch.times_s, strict=True)]

    return Frames(fn)


def _under(
    ctx: TaskContext,
    rgb: np.ndarray,
    people: np.ndarray,
    at: tuple[int, int],
    name: str,
    asked: tuple[int, int],
) -> np.ndarray:
    """The person under the point `at` (stored pixels, on the picture; `asked`: as the user
    gave it), else the salient object under it."""
    person = region_at(people, *at)
    if person is not None:
        return person
    thing = region_at(_objects(ctx, rgb), *at)
    if thing is None:
        if ctx.job.kind == "video":  # the subject has moved off the point: this frame keeps all
            return np.zeros_like(people)
        raise InputError(
            name, f"nothing to remove at {asked[0]},{asked[1]}: no person or salient object there"
        )
    return thing


@torch.inference_mode()
def _objects(ctx: TaskContext, rgb: np.ndarray) -> np.ndarray:
    """U²-Netp's salient objects of the frame, bool at its size."""
    model = saliency_model(ctx.settings.device)
    height, width = rgb.shape[:2]
    mask = model.objects(to_tensor([rgb], model.device), work_size(height, width))
    full = F.interpolate(mask.float(), size=(height, width), mode="bilinear", align_corners=False)
    return full[0, 0].cpu().numpy() >= OBJECT_THRESHOLD  # type: ignore[no-any-return]
