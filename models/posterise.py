"""Built-in poster styles without weights: posterise (flat colour regions) and stencil (the
people as two or three flat tones of ink on paper).

`posterise` is the cartoon (models.cartoon) without its ink lines: edge-preserving smoothing,
then soft luminance steps, with fewer levels and stronger smoothing so that regions come out
flat. `stencil` draws the people (a matte) as a screen print: their luminance cut into a few
tones at thresholds taken from the people's own luminance distribution, over plain or
paper-textured ground. Batched torch ops, deterministic, on the frames' device and dtype.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from models.cartoon import CartoonParams, cartoon
from models.colour import luma
from models.filters import gaussian_blur
from models.guided import self_guided_filter

PAPER_SEED = 1234  # the paper texture is this noise, the same on every frame and every run


def posterise(
    frames: torch.Tensor,
    levels: int = 4,
    *,
    smooth_radius: int = 4,
    smooth_eps: float = 0.01,
    smooth_passes: int = 2,
    sharpness: float = 16.0,
    saturation: float = 1.2,
    work_height: int = 480,
) -> torch.Tensor:
    """RGB [B, 3, H, W] in 0..1 -> the same shape in flat colour regions of `levels` luminance
    steps.

    The cartoon's pipeline with its ink lines switched off (an edge gain of 0 makes its line
    mask exactly 1): guided-filter smoothing (`smooth_*`, at `work_height` at most), then the
    luminance soft-stepped to `levels` values (`sharpness`: how steep the steps are; soft steps
    flicker less on video than hard ones) with the colour scaled to follow.
    """
    if levels < 2:
        raise ValueError(f"posterise needs at least 2 levels, got {levels}")
    params = CartoonParams(
        work_height=work_height,
        smooth_radius=smooth_radius,
        smooth_eps=smooth_eps,
        smooth_passes=smooth_passes,
        levels=levels,
        sharpness=sharpness,
        saturation=saturation,
        edge_gain=0.0,
    )
    return cartoon(frames, params)


def stencil(
    frames: torch.Tensor,
    alpha: torch.Tensor,
    tones: int = 3,
    ink: tuple[float, float, float] = (0.10, 0.12, 0.22),
    paper: tuple[float, float, float] = (0.96, 0.93, 0.85),
    texture: bool = True,
    *,
    softness: float = 0.02,
    smooth_radius: int = 2,
    smooth_eps: float = 0.002,
) -> torch.Tensor:
    """A stencil poster: the people of `frames` RGB [B, 3, H, W] (alpha [B, 1, H, W] in 0..1)
    as `tones` flat tones over paper. -> RGB [B, 3, H, W].

    The tones are shades between `ink` and `paper`: tone k of n (k = 0 darkest) is
    ink + (paper - ink) * k / n, so the darkest is the ink itself and even the lightest stays
    a step darker than the paper, and the people stand out where they are brightest. The
    thresholds between tones are the luminance's quantiles 1/n, 2/n, ... weighted by alpha (the
    people's luminance only, whatever the background), so each tone covers about the same share
    of the people on dark footage as on bright. The steps between tones are smooth ramps
    `softness` wide as a share of the people's luminance range (between its 5 % and 95 %
    quantiles, so the ramps scale with the footage too), which keeps a pixel near a threshold
    from flickering between two tones. The people are composited by alpha, so the matte's soft
    edge is kept; where alpha is 0 the result is the paper, plain or (`texture`) with a fixed
    procedural grain.
    """
    if tones not in (2, 3):
        raise ValueError(f"a stencil has 2 or 3 tones, got {tones}")
    if alpha.shape[0] != frames.shape[0] or alpha.shape[-2:] != frames.shape[-2:] or alpha.shape[1] != 1:
        raise ValueError(f"alpha {tuple(alpha.shape)} does not match frames {tuple(frames.shape)}")
    # smoothed first, keeping edges, so that skin texture and noise do not speckle the tones
    y = self_guided_filter(luma(frames), smooth_radius, smooth_eps)
    quantiles = _weighted_quantiles(y, alpha, [0.05, 0.95] + [k / tones for k in range(1, tones)])
    low, high, thresholds = quantiles[:, :1], quantiles[:, 1:2], quantiles[:, 2:]  # [B, 1], [B, n-1]
    # the ramp width in luminance; at least 1/1000 so that a flat frame does not divide by 0
    ramp = (softness * (high - low)).clamp_min(1e-3)[:, :, None, None]
    # Each threshold a smooth step 0 -> 1 (tanh, as the cartoon's levels); their sum is the
    # tone index, continuous between the integers only near a threshold.
    steps = torch.tanh((y - thresholds[:, :, None, None]) / ramp) * 0.5 + 0.5  # [B, n-1, H, W]
    shade = steps.sum(dim=1, keepdim=True) / tones  # 0, 1/n, .. (n-1)/n
    ink_rgb = _colour(ink, frames)
    paper_rgb = _colour(paper, frames)
    figure = torch.lerp(ink_rgb, paper_rgb, shade)  # [B, 3, H, W]
    ground = paper_rgb.expand_as(frames)
    if texture:
        ground = ground * paper_texture(*frames.shape[-2:], frames.device, frames.dtype)
    return torch.lerp(ground, figure, alpha).clamp(0.0, 1.0)


def _colour(rgb: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rgb, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)


def _weighted_quantiles(y: torch.Tensor, weight: torch.Tensor, qs: list[float]) -> torch.Tensor:
    """The weighted quantiles `qs` of y [B, 1, H, W] under weight [B, 1, H, W], per frame:
    [B, len(qs)].

    Taken on a copy at most 256 pixels high (area averages: the distribution barely changes,
    and the sort is 16 times smaller at 1080p) in float32 (a float16 running sum of weights
    stops growing at 2048). A small weight everywhere makes a frame without people fall back
    to the whole frame's quantiles instead of dividing by zero.
    """
    b = y.shape[0]
    h, w = y.shape[-2:]
    if h > 256:
        size = (256, max(1, round(w * 256 / h)))
        weight = F.interpolate(weight, size=size, mode="area")
        y = F.interpolate(y, size=size, mode="area")
    values, order = y.float().reshape(b, -1).sort(dim=1, stable=True)
    mass = weight.float().reshape(b, -1).gather(1, order) + 1e-4
    cumulative = mass.cumsum(dim=1)
    # the first value whose running weight reaches each share of the total
    targets = cumulative[:, -1:] * torch.tensor(qs, device=y.device)[None]  # [B, n]
    index = torch.searchsorted(cumulative, targets.contiguous()).clamp_(max=values.shape[1] - 1)
    return values.gather(1, index).to(y.dtype)


@functools.lru_cache(maxsize=4)
def paper_texture(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A paper grain [1, 1, H, W] around 1 (within about +-6 %), made on `device` from a fixed
    seed: the same on every call, so it does not flicker from frame to frame.

    Value noise at three scales summed with falling amplitude (a soft 1/f cloudiness, as of
    fibres pressed together), plus a fine grain blurred a little. Generated in float32 with a
    seeded generator on the device, then cast. Cached per size and device: it is made once per
    video, not once per batch. The cached tensor must not be modified in place.
    """
    generator = torch.Generator(device=device).manual_seed(PAPER_SEED)
    short = min(height, width)
    total = torch.zeros(1, 1, height, width, device=device)
    for cells, amplitude in ((8, 0.5), (32, 0.3), (128, 0.2)):
        # `cells` across the short side, at least 2 in each direction
        grid = (max(2, round(height / short * cells)), max(2, round(width / short * cells)))
        noise = torch.randn(1, 1, *grid, device=device, generator=generator)
        total += amplitude * F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)
    grain = torch.randn(1, 1, height, width, device=device, generator=generator)
    total += 0.5 * gaussian_blur(grain, 0.7)
    return (1.0 + 0.03 * total).clamp(0.8, 1.2).to(dtype)
