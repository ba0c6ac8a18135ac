"""style.frames: whole frames in the job's style, stabilised over time on video."""

from __future__ import annotations

from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

import torch

from models import styles
from models.device import pick_device, to_tensor, to_uint8
from models.temporal import WARMUP_FRAMES, Stabiliser
from models.transformer_net import CheckpointError
from orchestrator.errors import InputError
from orchestrator.styles import DEFAULT_SIZES
from workers.frames import Batch, Frames
from workers.media.images import read_rgb
from workers.runtime import TaskContext


@cache
def _device(name: str) -> torch.device:
    return pick_device(name)


def frames(ctx: TaskContext, stack: ExitStack) -> Frames:
    device = _device(ctx.settings.device)
    styler = _styler(ctx, device)
    stabiliser = Stabiliser() if ctx.params.stabilise and ctx.job.kind == "video" else None

    @torch.inference_mode()
    def fn(batch: Batch) -> list:
        styled = styler(to_tensor(batch.source, device))
        if stabiliser is not None:
            styled = stabiliser(batch.source, styled)
        return to_uint8(styled)

    # The previous segment's last frames go through first (outputs dropped), so the stabiliser's
    # state where this segment starts is close to what one unsplit pass would carry.
    return Frames(fn, warmup=WARMUP_FRAMES if stabiliser is not None else 0)


def _styler(ctx: TaskContext, device: torch.device) -> styles.Styler:
    """The job's style with its options; a style file comes from the store."""
    params = ctx.params
    spec = params.style
    if spec is None:
        raise ValueError(f"job {ctx.job.id}: a style stage without a style")
    options = (params.style_strength, params.preserve_colour, params.style_size)
    if "key" not in spec:
        return styler_for(spec, *options, device)
    with ctx.store.reading(spec["key"]) as path:
        return styler_for(spec, *options, device, path)


def styler_for(
    spec: dict[str, Any],
    strength: float,
    preserve_colour: bool,
    size: int | None,
    device: torch.device,
    path: Path | None = None,
) -> styles.Styler:
    """A style as orchestrator/styles.py stores it, with its options; `path`: its file, if any."""
    kind = spec["kind"]
    options = styles.Options(strength, preserve_colour, size or DEFAULT_SIZES.get(kind))
    if kind == "builtin":
        return styles.builtin(spec["name"], options)
    if kind == "multistyle":
        return styles.multistyle(spec["weights"], device, options)
    if path is None:
        raise ValueError(f"a {kind} style without its file")
    # As the submitter named it, for errors: an upload's own name over the server's copy of it
    name = str(spec.get("name") or spec.get("path") or spec.get("key"))
    if kind == "image":
        return styles.from_picture(to_tensor([read_rgb(path, name)], device), device, options)
    try:
        return styles.from_checkpoint(path, device, options, name)
    except CheckpointError as exc:  # not a TransformerNet state dict: this job's input is bad
        raise InputError(exc.name, exc.problem) from None
