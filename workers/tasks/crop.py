"""crop.*: the window of the job's aspect ratio that keeps what matters (models/smartcrop.py)."""

from __future__ import annotations

from contextlib import ExitStack
from fractions import Fraction
from functools import cache

import torch

from models.device import compute_dtype, pick_device, to_tensor
from models.saliency import Saliency
from models.smartcrop import best_window
from models.weights import ModelMissingError
from orchestrator.errors import ConfigError
from workers.frames import Batch, Frames
from workers.runtime import TaskContext

DEFAULT_RATIO = (1, 1)


@cache
def _saliency(device_name: str) -> Saliency:
    """Loaded once per worker process, on first use."""
    device = pick_device(device_name)
    return Saliency(device, compute_dtype(device))


def smart(ctx: TaskContext, stack: ExitStack) -> Frames:
    """Each image cut to the densest window of its saliency map."""
    saliency = _saliency(ctx.settings.device)
    ratio = Fraction(*(ctx.params.crop_ratio or DEFAULT_RATIO))

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        try:
            maps = saliency(to_tensor(batch.source, saliency.device))
        except ModelMissingError as exc:
            raise ConfigError(str(exc)) from None
        out = []
        for rgb, sal in zip(batch.source, maps, strict=True):
            height, width = rgb.shape[:2]
            w = best_window(sal[0], width, height, ratio)
            out.append(rgb[w.y : w.y + w.h, w.x : w.x + w.w].copy())
        return out

    return Frames(fn)
