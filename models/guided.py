"""Edge-aware refinement of a soft mask: the guided filter, in batched torch ops.

K. He, J. Sun, X. Tang, "Guided Image Filtering", TPAMI 2013: within every window the output
is a linear function of the guide image, so a blurry, low-resolution alpha takes on the
guide's edges (hair, limbs) when upsampled. The coefficients are computed at a reduced scale
and upsampled ("Fast Guided Filter", He & Sun 2015), which costs little accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over (2r+1)^2 windows, windows clipped at the border (same size out).

    Separable (rows, then columns): the clipped 2-D count is the product of the 1-D ones.
    """
    k = 2 * r + 1
    rows = F.avg_pool2d(x, (1, k), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(rows, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)


def guided_coefficients(
    g: torch.Tensor, p: torch.Tensor, r: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The window-averaged linear map (a, b), each [B, 1, h, w], that turns the grey guide `g`
    into the soft mask `p` (both [B, 1, h, w]) within windows of radius `r`."""
    # the four window means in one pooling call: [B, 4, h, w]
    means = box_mean(torch.cat([g, p, g * g, g * p], dim=1), r)
    mean_g, mean_p, mean_gg, mean_gp = means.split(1, dim=1)
    a = (mean_gp - mean_g * mean_p) / (mean_gg - mean_g * mean_g + eps)
    b = mean_p - a * mean_g
    mean_a, mean_b = box_mean(torch.cat([a, b], dim=1), r).split(1, dim=1)
    return mean_a, mean_b


def apply_coefficients(guide: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * guide + b at the guide's size [B, 1, H, W] (a, b bilinearly upsampled to it)."""
    h, w = guide.shape[-2:]
    if (h, w) != tuple(a.shape[-2:]):
        a = F.interpolate(a, size=(h, w), mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False)
    return torch.addcmul(b, a, guide)


def guided_filter(guide: torch.Tensor, g: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Filter `p` to follow the edges of `guide`.

    guide [B, 1, H, W]: the grey frame at full resolution; g, p [B, 1, h, w]: the grey frame
    and the soft mask at a working resolution (h <= H), where the linear model is fitted with
    windows of radius `r`. The result has the guide's size.
    """
    return apply_coefficients(guide, *guided_coefficients(g, p, r, eps)).clamp_(0.0, 1.0)
