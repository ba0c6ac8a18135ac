"""Smart crop: the window of an aspect ratio that keeps what matters, for images and video.

Pure functions over a saliency map (models/saliency.py makes one); no networks here.

Images: the window is the largest of the ratio that fits (window_size) and slides over the map
to the position holding the most saliency (best_window). Window sums come from the map's
integral image, read with bilinear interpolation: the integral of a map that is constant over
each cell is exactly bilinear inside the cell, so the sum under a window placed to the frame's
pixel, not the map's coarser cell, is exact, and every position costs four reads.

Video, after MediaPipe's AutoFlip: the window keeps one size for the whole video; shot changes
are found from colour histograms (shot_changes). Within a shot the target is a robust
constant-velocity fit of the per-frame best centres over a short window, half of it look-ahead,
and a kinematic camera follows it (crop_path): it holds still while the target stays within a
dead zone, otherwise moves with the target's own speed plus a closing speed, under a speed and
an acceleration limit, braking so as to arrive without overshooting, and it stops again where
the subject comes to rest. It jumps only at a shot change, where it starts afresh on the new
shot's target. The path is made frame by frame by CropPathState, so a video fed to it in
segments, its state carried from one to the next, gets exactly the path of one pass;
crop_path is that pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch

# Scores within this share of the best are ties: among them the window best centred on what it
# holds wins. A subject that fits in many positions is then framed in the middle, not against
# the edge nearest the image's centre (exact ties would let a soft matte's faint tail decide).
TIE_SHARE = 0.01

# Shot changes: 1 - the intersection of consecutive frames' colour histograms (8 levels per
# channel). On the DAVIS development videos consecutive frames of one shot differ by at most
# 0.05 (camera pans and fast motion included), the last frame of one sequence and the first of
# another by 0.55 and more; 0.3 sits well between.
HISTOGRAM_LEVELS = 8
CUT_DISTANCE = 0.3

# The camera (units: the frame's width for x, its height for y, seconds).
LOOKAHEAD_S = 0.5  # the target is fitted to the best centres within +-this much of the shot
DEAD_ZONE = 0.1  # of the window's size: the camera holds while the target stays this close
MAX_SPEED = 0.5  # frame sizes per second
MAX_ACCEL = 2.0  # frame sizes per second squared: full speed in a quarter of a second
SETTLE_PX = 0.5  # a camera this close to its target, and slow, stops and holds


@dataclass(frozen=True)
class Window:
    """A crop window in frame pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


def window_size(width: int, height: int, ratio: Fraction, even: bool = False) -> tuple[int, int]:
    """(w, h) of the largest window of `ratio` (w / h) inside a width x height image: one side
    is the image's, the other the nearest whole number to what the ratio makes of it (half a
    pixel off at most). `even`: both sides even, as H.264's 4:2:0 wants (a pixel off at most,
    and an odd side of the image loses its last pixel)."""
    step = 2 if even else 1
    if width < step or height < step:
        raise ValueError(f"no {'even-sized ' if even else ''}window fits in a {width}x{height} image")
    ratio = Fraction(ratio)
    room_w, room_h = width - width % step, height - height % step

    def snap(value: Fraction) -> int:
        return max(step, step * round(value / step))

    if width * ratio.denominator >= height * ratio.numerator:  # the image is the wider: full height
        return min(snap(room_h * ratio), room_w), room_h
    return room_w, min(snap(room_w / ratio), room_h)


def centre_window(width: int, height: int, ratio: Fraction, even: bool = False) -> Window:
    """The window of window_size in the middle of the image (the plain crop)."""
    w, h = window_size(width, height, ratio, even)
    return Window((width - w) // 2, (height - h) // 2, w, h)


def _as_map(saliency: np.ndarray | torch.Tensor) -> np.ndarray:
    """[h, w] float64 (leading axes of size 1, as [1, 1, h, w], are dropped)."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().float().cpu().numpy()
    array = np.asarray(saliency, dtype=np.float64)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"a saliency map is [h, w], not {list(array.shape)}")
    # a float16 map can hold an inf, a broken one NaNs: neither may win or poison the sums
    return np.clip(np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)


def _edge_weights(edges: np.ndarray, cells: int) -> np.ndarray:
    """[len(edges), cells + 1]: linear interpolation weights of positions `edges` (in map cells)
    on the integral image's grid 0..cells."""
    edges = np.clip(edges, 0.0, cells)
    left = np.minimum(np.floor(edges).astype(int), cells - 1)
    t = edges - left
    weights = np.zeros((len(edges), cells + 1))
    rows = np.arange(len(edges))
    weights[rows, left] = 1.0 - t
    weights[rows, left + 1] = t
    return weights


def window_sums(saliency: np.ndarray | torch.Tensor, width: int, height: int, w: int, h: int) -> np.ndarray:
    """[height - h + 1, width - w + 1]: the saliency under a w x h window at every position
    (x, y) in frame pixels, the map covering the whole width x height frame."""
    s = _as_map(saliency)
    mh, mw = s.shape
    integral = np.zeros((mh + 1, mw + 1))
    integral[1:, 1:] = s.cumsum(0).cumsum(1)
    xs = np.arange(width - w + 1, dtype=np.float64)
    ys = np.arange(height - h + 1, dtype=np.float64)
    # sum = I(bottom, right) - I(top, right) - I(bottom, left) + I(top, left), every position at
    # once: (rows of bottom - rows of top) @ I @ (columns of right - columns of left)^T
    across = _edge_weights((xs + w) * mw / width, mw) - _edge_weights(xs * mw / width, mw)
    down = _edge_weights((ys + h) * mh / height, mh) - _edge_weights(ys * mh / height, mh)
    return down @ integral @ across.T


def best_window(
    saliency: np.ndarray | torch.Tensor, width: int, height: int, ratio: Fraction, *, even: bool = False
) -> Window:
    """The window of window_size(width, height, ratio, even) over the most saliency; the map
    [h, w] covers the whole image, at any resolution. Ties (within TIE_SHARE of the best): the
    window best centred on what it holds, then the one nearest the image's centre (so an empty
    map gives the centre crop)."""
    s = _as_map(saliency)
    w, h = window_size(width, height, ratio, even)
    sums = window_sums(s, width, height, w, h)
    best = float(sums.max())
    ys, xs = np.nonzero(sums >= best - TIE_SHARE * best)
    cx, cy = _centres_of_mass(s, xs, ys, w, h, width, height)
    off_centre = np.hypot(xs + w / 2 - cx, ys + h / 2 - cy)
    to_middle = np.hypot(xs + w / 2 - width / 2, ys + h / 2 - height / 2)
    centred = off_centre <= off_centre.min() + 1e-6 * max(width, height)  # rounding aside
    k = int(np.flatnonzero(centred)[to_middle[centred].argmin()])
    return Window(int(xs[k]), int(ys[k]), w, h)


def _centres_of_mass(
    s: np.ndarray, xs: np.ndarray, ys: np.ndarray, w: int, h: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of mass, in frame pixels, of the saliency inside the w x h windows at (xs, ys)
    (the image's centre for a window that holds none). Exact for a map constant over each cell:
    a cell a window cuts counts with the part inside, at that part's middle."""

    def cover(starts: np.ndarray, length: int, cells: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        edges = np.arange(cells + 1) * side / cells
        lo = np.clip(edges[None, :-1], starts[:, None], starts[:, None] + length)
        hi = np.clip(edges[None, 1:], starts[:, None], starts[:, None] + length)
        return (hi - lo) * cells / side, (lo + hi) / 2  # [windows, cells]: share inside, middle

    mh, mw = s.shape
    col_share, col_mid = cover(xs, w, mw, width)
    row_share, row_mid = cover(ys, h, mh, height)
    rows = row_share @ s  # [windows, mw]: each window's rows summed, per column
    cols = (s @ col_share.T).T  # [windows, mh]: each window's columns summed, per row
    mass = (rows * col_share).sum(1)
    some = mass > 0
    safe = np.where(some, mass, 1.0)
    cx = np.where(some, (rows * col_share * col_mid).sum(1) / safe, width / 2)
    cy = np.where(some, (cols * row_share * row_mid).sum(1) / safe, height / 2)
    return cx, cy


# --- video ------------------------------------------------------------------------------------


def colour_histogram(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> its colour histogram, HISTOGRAM_LEVELS per channel, summing to 1
    (every second pixel each way: a cut changes the whole frame, so that is plenty)."""
    pixels = np.asarray(frame)[::2, ::2, :3].reshape(-1, 3) // (256 // HISTOGRAM_LEVELS)
    index = (pixels[:, 0].astype(np.int64) * HISTOGRAM_LEVELS + pixels[:, 1]) * HISTOGRAM_LEVELS + pixels[
        :, 2
    ]
    counts = np.bincount(index, minlength=HISTOGRAM_LEVELS**3).astype(np.float64)
    return counts / max(1.0, counts.sum())


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - histogram intersection: 0 for the same colours, 1 for none in common."""
    return 1.0 - float(np.minimum(a, b).sum())


def shot_changes(histograms: Sequence[np.ndarray], threshold: float = CUT_DISTANCE) -> list[int]:
    """Indices of the frames that start a new shot (frame 0, which starts the first, is not
    listed), from the frames' colour_histogram."""
    return [
        i
        for i in range(1, len(histograms))
        if histogram_distance(histograms[i - 1], histograms[i]) > threshold
    ]


def _line_fit(times: Sequence[int], values: Sequence[float]) -> tuple[float, float]:
    """A robust constant-velocity fit (Theil-Sen: the median of the pairwise slopes): the value
    at time 0 and the slope. Robust, so a few frames whose best window jumped to something else
    do not drag the target; a line, so a subject that moves is not lagged behind at the ends of
    the window (the start of a shot, where all of it is look-ahead)."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    i, j = np.triu_indices(len(t), 1)
    slope = float(np.median((v[j] - v[i]) / (t[j] - t[i]))) if len(i) else 0.0
    return float(np.median(v - slope * t)), slope


@dataclass
class _Axis:
    """The camera along one axis: position (the window's centre) and velocity, in pixels."""

    position: float = 0.0
    velocity: float = 0.0
    holding: bool = True

    def step(
        self, target: float, speed: float, rest: float, dead_zone: float, max_speed: float, max_accel: float
    ) -> None:
        """One frame towards `target`, which moves at `speed` (pixels a frame) and, as far as
        the look-ahead shows, comes to `rest` there."""
        error = target - self.position
        if self.holding:
            if abs(error) <= dead_zone:
                return
            self.holding = False
        # The target's own speed, plus the fastest closing speed from which the camera can
        # still brake to the target's pace on reaching it.
        closing = math.copysign(min(max_speed, math.sqrt(2.0 * max_accel * abs(error))), error)
        wanted = min(max_speed, max(-max_speed, speed + closing))
        self.velocity += min(max_accel, max(-max_accel, wanted - self.velocity))
        if (self.velocity - speed) * error > 0 and abs(self.velocity - speed) > abs(error):
            # arrive rather than overshoot, and go on at the target's pace
            self.position += speed + error
            self.velocity = speed
        else:
            self.position += self.velocity
        # Stop on the target only where the subject stays: at the end of a move the fit, half
        # of it on the move still, slows before the subject stops, and a camera that settled on
        # it would hold short of the subject, within the dead zone, for as long as it stays.
        if (
            abs(target + speed - self.position) < SETTLE_PX
            and abs(rest - self.position) <= dead_zone / 8
            and abs(self.velocity) <= max_accel
        ):
            self.holding, self.velocity = True, 0.0

    def reset(self, position: float) -> None:
        self.position, self.velocity, self.holding = position, 0.0, True


@dataclass
class CropPathState:
    """The crop path made frame by frame: push each frame's target, in order, as it comes;
    windows come out `lookahead` frames later (finish() gives the rest at the video's end).

    State carried from segment to segment (this object, a copy, or to_json/from_json between
    processes) gives exactly the path of one pass. A fresh state warmed up on the end of the
    previous segment (warm_up) does not: where a holding camera holds depends on where it last
    stopped, possibly long before the warm-up; the two paths meet once both have followed the
    subject to a new rest, or at the next shot change. On the DAVIS development videos, with
    one second of warm-up, the fresh state's windows were up to 40 px (9:16) and 52 px (1:1)
    off the one-pass path at 854x480 (a visible jump at the seam), so segments run in parallel
    should take their windows from one crop_path over the whole video's per-frame targets
    (cheap: numbers only) rather than from warmed-up fresh states.
    """

    width: int
    height: int
    size: tuple[int, int]  # (w, h) of the window, fixed for the video
    fps: float = 30.0
    # frames not yet emitted, and up to `lookahead` emitted ones before them: (cx, cy, starts shot)
    _frames: list[tuple[float, float, bool]] = field(default_factory=list)
    _next: int = 0  # index in _frames of the next frame to emit
    _x: _Axis = field(default_factory=_Axis)
    _y: _Axis = field(default_factory=_Axis)
    _drop: int = 0  # outputs still to swallow (warm-up frames)

    @property
    def lookahead(self) -> int:
        return max(1, round(LOOKAHEAD_S * self.fps))

    def push(
        self, targets: Sequence[Window | tuple[float, float]], cuts: Collection[int] = ()
    ) -> list[Window]:
        """Add frames: each a per-frame best window (its centre is the target) or a centre (x, y);
        `cuts`: indices into `targets` of frames that start a new shot. The very first frame
        starts one anyway. Returns the windows now decided, in frame order."""
        cuts = set(cuts)
        for i, target in enumerate(targets):
            cx, cy = target.centre if isinstance(target, Window) else target
            self._frames.append((float(cx), float(cy), i in cuts or not self._frames))
        out = []
        while self._next + self.lookahead < len(self._frames):
            out.append(self._emit())
        return self._swallow(out)

    def warm_up(self, targets: Sequence[Window | tuple[float, float]], cuts: Collection[int] = ()) -> None:
        """Frames before the first one wanted (the end of the previous segment): pushed, their
        windows dropped."""
        self._drop += len(targets)
        self._swallow(self.push(targets, cuts))

    def finish(self) -> list[Window]:
        """The windows of the frames still held back: the video ends here."""
        out = []
        while self._next < len(self._frames):
            out.append(self._emit())
        return self._swallow(out)

    def to_json(self) -> dict[str, Any]:
        """The state as plain JSON values (for handing it to another process)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CropPathState:
        return cls(
            **{
                **data,
                "size": tuple(data["size"]),
                "_frames": [tuple(f) for f in data["_frames"]],
                "_x": _Axis(**data["_x"]),
                "_y": _Axis(**data["_y"]),
            }
        )

    def _swallow(self, windows: list[Window]) -> list[Window]:
        dropped = min(self._drop, len(windows))
        self._drop -= dropped
        return windows[dropped:]

    def _emit(self) -> Window:
        t = self._next
        frames = self._frames
        # the frames of t's shot within +-lookahead
        first = t
        while first > 0 and t - first < self.lookahead and not frames[first][2]:
            first -= 1
        last = t
        while last + 1 < len(frames) and last + 1 - t <= self.lookahead and not frames[last + 1][2]:
            last += 1
        times = range(first - t, last - t + 1)
        w, h = self.size
        for k, (axis, side, frame_side) in enumerate(((self._x, w, self.width), (self._y, h, self.height))):
            values = [f[k] for f in frames[first : last + 1]]
            target, speed = _line_fit(times, values)
            # A line through a subject that stops runs on past where it stopped, and near the
            # image's edge past where the window can go: the target stays within both.
            low = max(side / 2, min(values))
            high = min(frame_side - side / 2, max(values))
            if not low <= target <= high:
                target, speed = min(high, max(low, target)), 0.0
            if frames[t][2]:
                axis.reset(target)
            else:
                rest = float(np.median(values[t - first :]))  # this frame and the look-ahead
                axis.step(
                    target,
                    speed,
                    rest,
                    DEAD_ZONE * side,
                    MAX_SPEED * frame_side / self.fps,
                    MAX_ACCEL * frame_side / self.fps**2,
                )
        self._next += 1
        # keep the lookahead frames behind the next one: they are in its fit's window
        spare = self._next - self.lookahead
        if spare > 0:
            del frames[:spare]
            self._next -= spare
        x = min(max(0, round(self._x.position - w / 2)), self.width - w)
        y = min(max(0, round(self._y.position - h / 2)), self.height - h)
        return Window(x, y, w, h)


def crop_path(
    targets: Sequence[Window | tuple[float, float]],
    cuts: Collection[int],
    width: int,
    height: int,
    size: tuple[int, int] | None = None,
    fps: float = 30.0,
) -> list[Window]:
    """The smoothed crop path of a whole video: one window per target (per-frame best windows,
    or centres with `size`), `cuts` the frames that start a new shot (shot_changes)."""
    if size is None:
        first = targets[0] if targets else None
        if not isinstance(first, Window):
            raise ValueError("crop_path needs `size` when the targets are centres")
        size = (first.w, first.h)
    state = CropPathState(width, height, size, fps)
    return state.push(targets, set(cuts)) + state.finish()


def jitter(windows: Sequence[Window], cuts: Collection[int] = ()) -> float:
    """Mean movement of the window from frame to frame, in pixels (the distance its top-left
    corner moves); the steps into the frames in `cuts` (shot changes) are left out."""
    steps = [
        math.hypot(b.x - a.x, b.y - a.y)
        for i, (a, b) in enumerate(itertools.pairwise(windows), start=1)
        if i not in cuts
    ]
    return float(np.mean(steps)) if steps else 0.0
