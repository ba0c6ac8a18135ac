"""Built-in pencil-sketch style: graphite lines on paper, from the luminance alone. No weights.

The lines are an extended difference of Gaussians (H. Winnemöller, J. E. Kyprianidis,
S. C. Olsen, "XDoG: An eXtended difference-of-Gaussians compendium including advanced image
stylization", Computers & Graphics 36(6), 2012) taken as a ratio, which is the photo editor's
pencil-sketch recipe: a colour dodge of the luminance with its inverted blur is y / blur(y),
near 1 wherever the frame is flat and below 1 on the dark side of every edge (here y itself
lightly blurred, the Gaussian of the DoG's centre, against a wider one). Dividing by the
surroundings makes the lines as strong in shadows as in highlights (a plain difference would
scale with the brightness). The ratio minus 1, u, goes through XDoG's soft threshold (the
paper's form, on the negative side): 1 above -epsilon and 1 + tanh(phi * (u + epsilon))
below, a smooth ramp from paper to graphite, not a hard step, so a line that hovers at the
threshold fades in and out on video instead of flickering. A light shading of the dark regions
keeps the sketch from being lines only.
"""

from __future__ import annotations

import torch

from models.colour import luma
from models.filters import gaussian_blur

# the frame size (its short side) the sigmas are given for: above it the Gaussians scale with
# the frame, so a line is as thick, relative to the picture, at 1080p as at 480p
REFERENCE_SIDE = 480
SHADOW = 0.6  # the luminance below which the shading starts


def pencil(
    frames: torch.Tensor,
    *,
    sigma: float = 1.0,
    k: float = 3.0,
    epsilon: float = 0.07,
    phi: float = 20.0,
    shading: float = 0.35,
    paper: tuple[float, float, float] | None = None,
) -> torch.Tensor:
    """RGB [B, 3, H, W] in 0..1 -> a pencil sketch, RGB of the same shape (grey unless `paper`).

    sigma: the fine Gaussian's sigma in pixels of a frame 480 pixels on its short side (the
    line width); k: the ratio of the wide Gaussian (the surroundings a pixel is compared with)
    to the fine one.
    epsilon: how much darker than its surroundings a pixel must be, as a share, to start a line.
    phi: the steepness of the soft threshold (larger: crisper, darker lines).
    shading: how dark the darkest regions are toned (0: lines only); luminances above
    SHADOW are left paper-white.
    paper: the paper's RGB colour in 0..1 (e.g. (1.0, 0.96, 0.88), a warm tone) that the grey
    graphite multiplies; None for white paper, the output then grey in all three channels.
    """
    scale = max(1.0, min(frames.shape[-2:]) / REFERENCE_SIDE)
    y = luma(frames)
    fine = gaussian_blur(y, sigma * scale)
    wide = gaussian_blur(y, k * sigma * scale)
    # The dodge ratio minus 1: 0 on flat areas, negative on the dark side of an edge. The
    # constant under the division keeps near-black areas (noise in a tiny denominator) from
    # drawing lines, and float16 from dividing by zero.
    contrast = (fine - wide) / (wide + 0.05)
    # XDoG's soft threshold, on the negative side only: 1 (paper) until -epsilon, then a tanh
    # ramp down to 0 (graphite); the clamp makes it exactly 1 above the threshold.
    lines = 1.0 + torch.tanh(phi * (contrast + epsilon).clamp(max=0.0))
    # A tone for the dark regions only (below SHADOW), quadratic, so it fades in smoothly:
    # midtones and highlights stay paper, shadows are toned down to 1 - shading.
    tone = 1.0 - shading * (1.0 - wide / SHADOW).clamp(0.0, 1.0).square()
    grey = (lines * tone).clamp(0.0, 1.0)
    if paper is None:
        return grey.expand(-1, 3, -1, -1).contiguous()
    colour = torch.tensor(paper, device=frames.device, dtype=frames.dtype).view(1, 3, 1, 1)
    return grey * colour
