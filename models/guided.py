"""The guided filter, in batched torch ops: edge-aware refinement and edge-preserving smoothing.

K. He, J. Sun, X. Tang, "Guided Image Filtering", TPAMI 2013: within every window the output
is a linear function of the guide image, so a blurry, low-resolution alpha takes on the
guide's edges (hair, limbs) when upsampled. The coefficients are computed at a reduced scale
and upsampled ("Fast Guided Filter", He & Sun 2015), which costs little accuracy. With an
image as its own guide the same model smooths flat areas and keeps strong edges.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.filters import box_mean


def guided_coefficients(
    g: torch.Tensor, p: torch.Tensor, r: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The window-averaged linear map (a, b), each [B, 1, h, w], that turns the grey guide `g`
    into the soft mask `p` (both [B, 1, h, w]) within windows of radius `r`."""
    # the four window means in one call: [B, 4, h, w]
    means = box_mean(torch.cat([g, p, g * g, g * p], dim=1), r)
    mean_g, mean_p, mean_gg, mean_gp = means.split(1, dim=1)
    a = (mean_gp - mean_g * mean_p) / (mean_gg - mean_g * mean_g + eps)
    b = mean_p - a * mean_g
    mean_a, mean_b = box_mean(torch.cat([a, b], dim=1), r).split(1, dim=1)
    return mean_a, mean_b


def apply_coefficients(guide: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * guide + b at the guide's size [B, C, H, W] (a, b bilinearly upsampled to it). On
    the CPU the guide may be uint8 (its values as they are: scale `a` to suit)."""
    h, w = guide.shape[-2:]
    cpu = guide.device.type == "cpu" and a.dtype == b.dtype == torch.float32
    if cpu and guide.dtype in (torch.float32, torch.uint8) and (h, w) != tuple(a.shape[-2:]):
        return _apply_upsampled_cpu(guide, a, b)
    guide = guide.to(a.dtype)
    if (h, w) == tuple(a.shape[-2:]):
        return torch.addcmul(b, a, guide)
    a = F.interpolate(a, size=(h, w), mode="bilinear", align_corners=False)
    b = F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False)
    return torch.addcmul(b, a, guide)


def _apply_upsampled_cpu(guide: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """apply_coefficients on the CPU, one plane at a time through OpenCV: its bilinear resize
    samples as torch's (half-pixel centres) and at 1080p the whole step takes ~4 ms a frame
    against ~15 for torch's upsampling and multiply-add. A one-channel operand is broadcast."""
    h, w = guide.shape[-2:]
    g, a_np, b_np = (x.contiguous().numpy() for x in (guide, a, b))
    out = np.empty((guide.shape[0], max(guide.shape[1], a.shape[1]), h, w), np.float32)

    def plane(x: np.ndarray, i: int, c: int) -> np.ndarray:
        return x[i, min(c, x.shape[1] - 1)]

    # Two planes reused for every upsampled a and b: fresh ones would fault in their pages
    # (8 MB each at 1080p) every time.
    up_a, up_b = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    for i in range(out.shape[0]):
        for c in range(out.shape[1]):
            cv2.resize(plane(a_np, i, c), (w, h), dst=up_a, interpolation=cv2.INTER_LINEAR)
            cv2.resize(plane(b_np, i, c), (w, h), dst=up_b, interpolation=cv2.INTER_LINEAR)
            cv2.multiply(up_a, plane(g, i, c), dst=out[i, c], dtype=cv2.CV_32F)
            out[i, c] += up_b
    return torch.from_numpy(out)


def guided_filter(guide: torch.Tensor, g: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Filter `p` to follow the edges of `guide`.

    guide [B, 1, H, W]: the grey frame at full resolution; g, p [B, 1, h, w]: the grey frame
    and the soft mask at a working resolution (h <= H), where the linear model is fitted with
    windows of radius `r`. The result has the guide's size.
    """
    return apply_coefficients(guide, *guided_coefficients(g, p, r, eps)).clamp_(0.0, 1.0)


def self_guided_filter(x: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Each channel of `x` [B, C, H, W] filtered with itself as the guide, at its own size:
    edge-preserving smoothing (lower `eps` keeps more edges).

    With guide and source the same, the window means of g·p and p are those of g² and g,
    so two sets of channels are averaged instead of four.
    """
    c = x.shape[1]
    mean, mean_sq = box_mean(torch.cat([x, x * x], dim=1), r).split(c, dim=1)
    var = mean_sq - mean * mean
    a = var / (var + eps)
    mean_a, mean_b = box_mean(torch.cat([a, mean * (1 - a)], dim=1), r).split(c, dim=1)
    return apply_coefficients(x, mean_a, mean_b)
