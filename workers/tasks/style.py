"""style.*: built-in styles over whole frames."""

from __future__ import annotations

from functools import cache

import torch

from models.cartoon import cartoon as cartoon_op
from models.device import pick_device, to_tensor, to_uint8
from workers.frames import Batch, map_frames
from workers.runtime import Result, TaskContext


@cache
def _device(name: str) -> torch.device:
    return pick_device(name)


def cartoon(ctx: TaskContext) -> Result:
    device = _device(ctx.settings.device)

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        return to_uint8(cartoon_op(to_tensor(batch.source, device)))

    return map_frames(ctx, fn)
