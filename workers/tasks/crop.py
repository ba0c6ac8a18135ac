"""crop.*: the window of the job's aspect ratio that keeps what matters (models/smartcrop.py).

An image is cut at the densest window of its saliency map. A video (one segment: the recipe is
whole_video) keeps one window size and moves it along a smooth path, as MediaPipe's AutoFlip
does: a first pass over its frames finds the shot changes and, a few times a second and at
every cut, the best window; the path is made from those, and the second pass cuts each frame.
"""

from __future__ import annotations

import bisect
import hashlib
from contextlib import ExitStack
from fractions import Fraction
from functools import cache

import numpy as np
import torch

from models.device import compute_dtype, pick_device, to_tensor
from models.saliency import Saliency
from models.smartcrop import (
    CUT_DISTANCE,
    Window,
    best_window,
    colour_histogram,
    crop_path,
    histogram_distance,
    window_size,
)
from models.weights import ModelMissingError
from orchestrator.errors import ConfigError
from workers.frames import Batch, Frames
from workers.runtime import TaskContext

DEFAULT_RATIO = (1, 1)
# Saliency maps a second of video: the networks cost far more than a frame's crop, and the path
# is smoothed over half a second either way, so a few samples a second (and one at every cut)
# place it as well as every frame would.
ANALYSE_FPS = 6.0
RECENT_MAPS = 8  # pictures whose saliency maps a worker keeps (see _picture_map)
_RECENT_MAPS: dict[bytes, torch.Tensor] = {}


@cache
def saliency_model(device_name: str) -> Saliency:
    """Loaded once per worker process, on first use."""
    device = pick_device(device_name)
    return Saliency(device, compute_dtype(device))


def smart(ctx: TaskContext, stack: ExitStack) -> Frames:
    saliency = saliency_model(ctx.settings.device)
    ratio = Fraction(*(ctx.params.crop_ratio or DEFAULT_RATIO))
    if ctx.job.kind == "video":
        return _video(ctx, saliency, ratio)

    def fn(batch: Batch) -> list:
        out = []
        for rgb in batch.source:
            height, width = rgb.shape[:2]
            out.append(_cut(rgb, best_window(_picture_map(saliency, rgb), width, height, ratio)))
        return out

    return Frames(fn)


def _picture_map(saliency: Saliency, rgb: np.ndarray) -> torch.Tensor:
    """A picture's saliency map [h, w], kept for the next few pictures: the jobs of one picture
    cut to several aspect ratios (`--ratio 1:1,4:5,9:16`) run one after another in a worker
    and share it (the networks cost ~100x the window search)."""
    digest = hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest()  # no copy
    digest += repr(rgb.shape).encode()
    if digest not in _RECENT_MAPS:
        if len(_RECENT_MAPS) >= RECENT_MAPS:
            del _RECENT_MAPS[next(iter(_RECENT_MAPS))]
        _RECENT_MAPS[digest] = _maps(saliency, [rgb])[0, 0]
    return _RECENT_MAPS[digest]


def _video(ctx: TaskContext, saliency: Saliency, ratio: Fraction) -> Frames:
    media = ctx.job.media
    width, height = media["width"], media["height"]
    # A phone video stored sideways: the ratio is as shown, the window cut as stored, and the
    # networks see the frames upright (a face lying on its side is one CenterFace misses).
    turns = (media.get("rotation", 0) // 90) % 4
    if turns % 2:
        ratio = 1 / ratio
    size = window_size(width, height, ratio, even=True)  # H.264 4:2:0 wants even sides
    fps = float(Fraction(media["avg_rate"])) or 30.0
    every = max(1, round(fps / ANALYSE_FPS))
    seen = [0]  # frames analysed so far
    last: list[np.ndarray] = []  # the previous frame's colour histogram
    cuts: list[int] = []  # frames that start a new shot (shot_changes' rule, as they come)
    centres: dict[int, tuple[float, float]] = {}  # of the analysed frames' best windows
    path: list[Window] = []

    def analyse(batch: Batch) -> None:
        picked = []
        for rgb in batch.source:
            i, histogram = seen[0], colour_histogram(rgb)
            seen[0] += 1
            cut = bool(last) and histogram_distance(last[0], histogram) > CUT_DISTANCE
            last[:] = [histogram]
            if cut:
                cuts.append(i)
            if i % every == 0 or cut:
                picked.append((i, rgb))
        if picked:
            shown = [np.ascontiguousarray(np.rot90(rgb, turns)) for _, rgb in picked]
            maps = torch.rot90(_maps(saliency, shown), -turns, dims=(2, 3))  # back as stored
            for (i, _), sal in zip(picked, maps, strict=True):
                centres[i] = best_window(sal[0], width, height, ratio, even=True).centre

    def fn(batch: Batch) -> list:
        if not path:
            path.extend(crop_path(_targets(centres, seen[0], cuts), cuts, width, height, size, fps))
        windows = path[position[0] : position[0] + len(batch)]
        position[0] += len(batch)
        return [_cut(rgb, w) for rgb, w in zip(batch.source, windows, strict=True)]

    position = [0]
    return Frames(fn, size=size, analyse=analyse)


def _targets(
    centres: dict[int, tuple[float, float]], frames: int, cuts: list[int]
) -> list[tuple[float, float]]:
    """A target centre for every frame: between two analysed frames of one shot, on the line
    between their centres; after a shot's last analysed frame, held. Every shot's first frame
    is analysed, so the frame before a frame is always of its own shot."""
    analysed = sorted(centres)
    starts = set(cuts)
    out = []
    for i in range(frames):
        k = bisect.bisect_right(analysed, i) - 1
        before = analysed[k]
        after = analysed[k + 1] if k + 1 < len(analysed) else None
        if before == i or after is None or after in starts:  # no later sample of this shot
            out.append(centres[before])
            continue
        t = (i - before) / (after - before)
        (x0, y0), (x1, y1) = centres[before], centres[after]
        out.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
    return out


@torch.inference_mode()
def _maps(saliency: Saliency, frames: list[np.ndarray]) -> torch.Tensor:
    try:
        return saliency(to_tensor(frames, saliency.device)).float().cpu()
    except ModelMissingError as exc:
        raise ConfigError(str(exc)) from None


def _cut(rgb: np.ndarray, w: Window) -> np.ndarray:
    return np.ascontiguousarray(rgb[w.y : w.y + w.h, w.x : w.x + w.w])
