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


def guided_filter(guide: torch.Tensor, g: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Filter `p` to follow the edges of `guide`.

    guide [B, 1, H, W]: the grey frame at full resolution; g, p [B, 1, h, w]: the grey frame
    and the soft mask at a working resolution (h <= H), where the linear model is fitted with
    windows of radius `r`. The result has the guide's size.
    """
    h, w = guide.shape[-2:]
    mean_g, mean_p = box_mean(g, r), box_mean(p, r)
    var_g = box_mean(g * g, r) - mean_g * mean_g
    cov_gp = box_mean(g * p, r) - mean_g * mean_p
    a = cov_gp / (var_g + eps)
    b = mean_p - a * mean_g
    mean_a, mean_b = box_mean(a, r), box_mean(b, r)
    if (h, w) != tuple(g.shape[-2:]):
        mean_a = F.interpolate(mean_a, size=(h, w), mode="bilinear", align_corners=False)
        mean_b = F.interpolate(mean_b, size=(h, w), mode="bilinear", align_corners=False)
    return (mean_a * guide + mean_b).clamp_(0.0, 1.0)
