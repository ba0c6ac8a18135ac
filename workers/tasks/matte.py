"""matte.*: person alpha mattes, one grey channel per frame (255 = person)."""

from __future__ import annotations

from contextlib import ExitStack
from functools import cache

import torch

from models.device import compute_dtype, pick_device
from models.edges import EdgeMatter
from models.person import MatteState, NobodyThere, PersonMatter, alpha_to_uint8
from models.weights import ModelMissingError
from orchestrator.errors import ConfigError, InputError
from workers.frames import Batch, Frames
from workers.media.shown import stored_point
from workers.runtime import TaskContext

# Frames of the previous segment matted first (outputs dropped) so the temporal state is
# warm at the segment's first frame: no seam where two workers' segments meet.
WARMUP_FRAMES = 8


@cache
def _edges(device_name: str) -> EdgeMatter:
    device = pick_device(device_name)
    try:
        return EdgeMatter(device, compute_dtype(device))
    except ModelMissingError as exc:
        raise ConfigError(str(exc)) from None


@cache
def _matter(device_name: str, landmark: str) -> PersonMatter:
    """Loaded once per worker process and network, on first use (after the pool has forked)."""
    device = pick_device(device_name)
    try:
        return PersonMatter(device, compute_dtype(device), landmark)
    except ModelMissingError as exc:
        raise ConfigError(str(exc)) from None


def person(ctx: TaskContext, stack: ExitStack) -> Frames:
    # The network is the job's choice, so every worker of one job mattes alike.
    matter = _matter(ctx.settings.device, ctx.params.matte_model)
    pick, name = ctx.params.person_at, ctx.job.input_name
    # A video carries its state from frame to frame; a picked person needs one on an image too.
    state = MatteState() if ctx.job.kind == "video" or pick else None
    edges = _edges(ctx.settings.device) if ctx.params.fine_edges else None

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        if pick is not None and state is not None and state.pick is None:  # the first frame
            height, width = batch.source[0].shape[:2]
            # given in the pixels a player shows (images are read upright: no rotation)
            state.pick = stored_point(pick, height, width, ctx.job.media.get("rotation", 0), name)
        try:
            alphas = list(alpha_to_uint8(matter(batch.source, state)))
        except NobodyThere:
            assert pick is not None  # only a pick looks for somebody
            where = "on the first frame" if ctx.job.kind == "video" else "in the picture"
            raise InputError(name, f"no person at {pick[0]},{pick[1]} {where}") from None
        if edges is not None and not batch.warmup:  # a warm-up's results are dropped
            alphas = [edges(rgb, alpha) for rgb, alpha in zip(batch.source, alphas, strict=True)]
        return alphas

    return Frames(fn, warmup=WARMUP_FRAMES)
