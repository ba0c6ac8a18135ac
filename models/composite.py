"""Composites of a frame with its person alpha, as batched torch ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W], borders reflected."""
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(t * t) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    horizontal = kernel.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)
    vertical = kernel.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), vertical, groups=c)


def blur_background(frames: torch.Tensor, alpha: torch.Tensor, strength: float = 0.02) -> torch.Tensor:
    """frames [B, 3, H, W], alpha [B, 1, H, W] in 0..1 -> people sharp over a blurred background.

    The background is blurred with the people masked out and renormalised (a normalised
    convolution), so no halo of the person's colours bleeds into it. `strength` is the blur's
    sigma as a share of the frame's short side; the blur runs at a quarter of the resolution.
    """
    h, w = frames.shape[-2:]
    factor = 4 if min(h, w) >= 64 else 1
    small = (max(1, h // factor), max(1, w // factor))
    background = 1.0 - alpha
    weighted = F.interpolate(frames * background, size=small, mode="area")
    weight = F.interpolate(background, size=small, mode="area")
    sigma = max(1.0, strength * min(small))
    blurred = gaussian_blur(weighted, sigma) / gaussian_blur(weight, sigma).clamp_min(1e-3)
    blurred = F.interpolate(blurred, size=(h, w), mode="bilinear", align_corners=False)
    return alpha * frames + background * blurred.clamp(0, 1)
