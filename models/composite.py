"""Composites of a frame with its person alpha, as batched torch ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.filters import gaussian_blur


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
