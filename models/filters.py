"""Separable blurs and the guided filter, batched over [B, C, H, W] tensors.

Blurs are sums of shifted views of a replicate-padded tensor: on a CPU this beats both
`avg_pool2d` and depthwise `conv2d` for the small windows used here (2-4x, measured on
8x3x540x960), and it runs unchanged on CUDA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _weighted_shift_sum(x: torch.Tensor, weights: list[float], dim: int) -> torch.Tensor:
    r = len(weights) // 2
    n = x.shape[dim]
    pad = (r, r, 0, 0) if dim == 3 else (0, 0, r, r)
    padded = F.pad(x, pad, mode="replicate")
    out = padded.narrow(dim, 0, n) * weights[0]
    for i in range(1, len(weights)):
        out.add_(padded.narrow(dim, i, n), alpha=weights[i])
    return out


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)² window, edges extended by replication."""
    w = [1.0 / (2 * radius + 1)] * (2 * radius + 1)
    return _weighted_shift_sum(_weighted_shift_sum(x, w, 3), w, 2)


def gaussian_weights(sigma: float) -> list[float]:
    radius = max(1, math.ceil(3 * sigma))
    k = [math.exp(-(t * t) / (2 * sigma * sigma)) for t in range(-radius, radius + 1)]
    total = sum(k)
    return [v / total for v in k]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    w = gaussian_weights(sigma)
    return _weighted_shift_sum(_weighted_shift_sum(x, w, 3), w, 2)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al., "Guided Image Filtering" (2010), per channel: q = a·I + b, local linear model.

    The output follows the edges of `guide` while taking its values from `src`.
    """
    mean_i = box_blur(guide, radius)
    mean_p = box_blur(src, radius)
    cov_ip = box_blur(guide * src, radius) - mean_i * mean_p
    var_i = box_blur(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_blur(a, radius) * guide + box_blur(b, radius)


def self_guided_filter(x: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """The guided filter with the image as its own guide: edge-preserving smoothing.

    Four box blurs instead of six, since the guide and the source are the same.
    """
    channels = x.shape[1]
    moments = box_blur(torch.cat([x, x * x], dim=1), radius)
    mean, mean_sq = moments[:, :channels], moments[:, channels:]
    var = mean_sq - mean * mean
    a = var / (var + eps)
    coeffs = box_blur(torch.cat([a, mean * (1 - a)], dim=1), radius)
    return coeffs[:, :channels] * x + coeffs[:, channels:]
