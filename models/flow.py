"""Optical flow for temporal coherence: DIS flow between frames, warping by a flow, and the mask
of pixels where a flow can be trusted.

Convention: a flow `f` from frame A to frame B gives, for every pixel x of A, the position
x + f(x) of the same point in B, so A(x) ~ B(x + f(x)); `warp(B, f)` brings B onto A's grid.
Channel 0 is the horizontal motion, channel 1 the vertical, in pixels of the grid the flow is
defined on.

The flow is OpenCV's DIS (Kroeger, Timofte, Dai, Van Gool, "Fast Optical Flow using Dense
Inverse Search", ECCV 2016). It runs on the CPU, on greyscale frames at a reduced working
size (short side `FLOW_SHORT_SIDE`), and is scaled up afterwards: the motion that matters for
carrying a style from frame to frame is smooth at that scale, and DIS's cost grows with the
pixel count. Warping and the reliability mask are torch ops and run on any device.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# Working size of the flow (short side, in pixels; frames smaller than this are not enlarged).
# 360 keeps DIS near 10 ms a direction and a pair at 720p, while its input warping error
# stays within a few percent of full-resolution flow on the DAVIS and sample clips.
FLOW_SHORT_SIDE = 360

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# The occlusion and motion-boundary tests of Ruder, Dosovitskiy, Brox, "Artistic style
# transfer for videos" (GCPR 2016), section 3.2, with the paper's constants; flows in pixels.
CONSISTENCY_RELATIVE = 0.01
CONSISTENCY_ABSOLUTE = 0.5  # px^2
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002


def working_size(height: int, width: int, short_side: int | None = FLOW_SHORT_SIDE) -> tuple[int, int]:
    """(h, w) that a frame of `height` x `width` is reduced to for the flow, aspect kept;
    never larger than the frame. `short_side=None`: the frame's own size."""
    if short_side is None or min(height, width) <= short_side:
        return height, width
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def grey(frame: np.ndarray, short_side: int | None = FLOW_SHORT_SIDE) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> greyscale uint8 [h, w] at the flow's working size.

    Converted to grey before resizing: a third of the pixels to resample. Area resampling,
    which averages rather than aliases fine texture (DIS matches patches; aliasing would
    make them flicker from frame to frame).
    """
    g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    h, w = working_size(g.shape[0], g.shape[1], short_side)
    if (h, w) != g.shape:
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA)
    return g


def shrink(frame: np.ndarray, short_side: int | None = FLOW_SHORT_SIDE) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> RGB uint8 [h, w, 3] at the flow's working size (area resampling)."""
    h, w = working_size(frame.shape[0], frame.shape[1], short_side)
    if (h, w) == frame.shape[:2]:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


class DISFlow:
    """One OpenCV DIS estimator. Not safe to share between threads: use one per stream."""

    def __init__(self, preset: str = "medium") -> None:
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])  # type: ignore[attr-defined]  # not in the stubs

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow from `first` to `second`, greyscale uint8 [h, w] of one size: float32 [h, w, 2]."""
        if first.shape != second.shape:
            raise ValueError(f"frames of different sizes: {first.shape} and {second.shape}")
        return self._dis.calc(first, second, None)


def dis_flow(
    first: np.ndarray, second: np.ndarray, short_side: int | None = FLOW_SHORT_SIDE, preset: str = "medium"
) -> np.ndarray:
    """Flow from RGB uint8 frame `first` to `second` ([H, W, 3]), computed at the working size and
    scaled up to the frames' size: float32 [H, W, 2] in full-size pixels."""
    height, width = first.shape[:2]
    flow = DISFlow(preset)(grey(first, short_side), grey(second, short_side))
    h, w = flow.shape[:2]
    if (h, w) == (height, width):
        return flow
    big = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    return big * np.array([width / w, height / h], dtype=np.float32)


def flow_tensor(flows: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Flows as float32 [h, w, 2] arrays -> a float32 tensor [B, 2, h, w] on `device`.

    Kept in float32 whatever the image dtype: sampling positions in float16 are off by up to
    half a pixel across a 1080p frame.
    """
    batch = torch.from_numpy(np.stack(flows)).to(device, torch.float32)
    return batch.permute(0, 3, 1, 2).contiguous()


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, 2, h, w] flow -> [B, 2, H, W] for `size` = (H, W): resampled bilinearly and its vectors
    scaled to the new pixel size."""
    h, w = flow.shape[-2:]
    height, width = size
    if (h, w) == (height, width):
        return flow
    big = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([width / w, height / h], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return big * scale


@functools.lru_cache(maxsize=16)
def _pixel_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Every pixel's (x, y): [1, 2, h, w], float32; kept, as a stream asks for the same sizes
    frame after frame."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs, ys]).unsqueeze(0)


def _positions(flow: torch.Tensor) -> torch.Tensor:
    """x + flow(x) for every pixel: [B, 2, H, W], float32."""
    return _pixel_grid(flow.shape[-2], flow.shape[-1], flow.device) + flow.float()


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """`image` [B, C, H, W] sampled at x + flow(x) for every pixel x (flow [B, 2, H, W], in pixels),
    by `mode` interpolation ("bilinear", "bicubic", "nearest"); positions outside the frame take
    the nearest border pixel. Same dtype out; bicubic may overshoot the input's range a little.

    The sampling runs in float32 (see `flow_tensor`) and is cast back.
    """
    _, _, h, w = image.shape
    if flow.shape[-2:] != (h, w):
        raise ValueError(f"flow {tuple(flow.shape)} does not match image {tuple(image.shape)}")
    pos = _positions(flow)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels
    grid = torch.stack(
        [pos[:, 0] * (2.0 / max(w - 1, 1)) - 1.0, pos[:, 1] * (2.0 / max(h - 1, 1)) - 1.0], dim=-1
    )
    out = F.grid_sample(image.float(), grid, mode=mode, padding_mode="border", align_corners=True)
    return out.to(image.dtype)


def _gradient_energy(flow: torch.Tensor) -> torch.Tensor:
    """|grad u|^2 + |grad v|^2 by central differences (one-sided at the borders): [B, 1, H, W]."""
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) * 0.5
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) * 0.5
    return (dx * dx + dy * dy).sum(dim=1, keepdim=True)


def reliable(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """Where the `backward` flow (from frame t to frame t-1, on t's grid) can be trusted to bring
    frame t-1 onto frame t: 1 there, 0 elsewhere, float32 [B, 1, H, W]. `forward` is the flow from
    t-1 to t (on t-1's grid); both [B, 2, H, W] in pixels, of one size.

    Binary, as Ruder et al. define it: a pixel is unreliable where
      - the flows disagree, |f~ + b|^2 > 0.01 (|f~|^2 + |b|^2) + 0.5, f~ the forward flow
        warped onto t's grid by the backward one: a point of t that t-1 does not show
        (disoccluded) or a wrong match;
      - it lies on a motion boundary, |grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002,
        where one patch straddles two motions and the flow blurs them;
      - the backward flow points outside frame t-1 (content entering the view).
    The thresholds are the paper's tests, not a calibrated confidence, so there is no honest
    in-between value to give; a user wanting soft transitions (the stabiliser does) blurs the
    mask, which also makes the choice of softness its own.
    """
    if forward.shape != backward.shape:
        raise ValueError(f"flows of different shapes: {tuple(forward.shape)} and {tuple(backward.shape)}")
    b = backward.float()
    f = warp(forward.float(), b)
    sum_sq = ((f + b) ** 2).sum(dim=1, keepdim=True)
    norms = (f * f).sum(dim=1, keepdim=True) + (b * b).sum(dim=1, keepdim=True)
    consistent = sum_sq <= CONSISTENCY_RELATIVE * norms + CONSISTENCY_ABSOLUTE
    smooth = _gradient_energy(b) <= BOUNDARY_RELATIVE * (b * b).sum(dim=1, keepdim=True) + BOUNDARY_ABSOLUTE
    h, w = b.shape[-2:]
    pos = _positions(b)
    inside = (pos[:, :1] >= 0) & (pos[:, :1] <= w - 1) & (pos[:, 1:] >= 0) & (pos[:, 1:] <= h - 1)
    return (consistent & smooth & inside).float()
