"""Built-in painterly style: the anisotropic Kuwahara filter, in batched torch ops.

J. E. Kyprianidis, H. Kang, J. Döllner, "Image and Video Abstraction by Anisotropic Kuwahara
Filtering", Computer Graphics Forum 28(7), 2009. Around every pixel an ellipse follows the local
structure (stretched along edges where the structure tensor says they are strongly oriented, a
circle where the image is flat or isotropic). The ellipse is split into 8 sectors with smooth,
overlapping weights; each sector's weighted mean colour counts in the result by how uniform the
sector is (the inverse of its standard deviation to the power q). A sector that straddles an
edge has a large variance and is ignored, so edges stay sharp while texture inside regions is
flattened into strokes.

How it is batched: the ellipse is sampled at a fixed pattern of points of the unit disc (rings
of points, RINGS). Each point is mapped per pixel into the image by the pixel's ellipse and
the frame is sampled there bilinearly (`grid_sample`); since the points are fixed on the disc,
every sector's weight for every point is a constant, so all sector sums are one matrix product
over the samples. That is the paper's integral over the disc after its change of variables (the
mapping keeps areas: the ellipse's axes multiply to r^2), taken by quadrature.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from models.colour import luma
from models.filters import gaussian_blur

SECTORS = 8
# Rings of the sample pattern on the unit disc: (radius, number of points), the centre first.
# Every other count is a multiple of 8, so each sector holds the same points up to a rotation
# and their weights are alike; the outer rings hold more points as they cover more area.
RINGS = ((0.0, 1), (0.4, 8), (0.75, 16))
SECTOR_SMOOTHING = 0.35  # the angular Gaussian that smooths each sector's edges, in sector widths
RADIAL_SIGMA = 0.6  # the radial Gaussian decay of the weights, in disc radii
# Pixels filtered at once; their samples are M times as many. On a CPU a chunk whose samples
# stay in the cache (about 6 MB at 24 rows of 854) runs twice as fast as 96 rows; on a GPU
# large chunks keep it busy.
CHUNK_PIXELS = {"cpu": 20_000}
CHUNK_PIXELS_ELSEWHERE = 500_000  # about 400 MB of samples and grid in float32


def kuwahara(
    frames: torch.Tensor,
    radius: float = 5.0,
    *,
    work_short_side: int = 480,
    sharpness: float = 8.0,
    alpha: float = 1.0,
    tensor_sigma: float = 2.0,
    noise: float = 0.02,
) -> torch.Tensor:
    """RGB [B, 3, H, W] in 0..1 -> painterly RGB of the same shape.

    radius: the filter's radius in pixels at the working size (the ellipse's axes are
    radius * (alpha + A) / alpha and radius * alpha / (alpha + A) for anisotropy A in 0..1).
    work_short_side: the filter runs with the frame's short side at most this long; the result
    is upsampled back to the frame's size.
    sharpness: the paper's q, how strongly uniform sectors win over the others.
    alpha: the paper's alpha, how little anisotropy stretches the ellipse (larger: rounder).
    tensor_sigma: the Gaussian that smooths the structure tensor, in working pixels.
    noise: the standard deviation (RGB, 0..1) below which sectors count as equally uniform.
    """
    height, width = frames.shape[-2:]
    scale = min(1.0, work_short_side / min(height, width))
    small = frames
    if scale < 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        small = F.interpolate(frames, size=size, mode="area")

    out = _filter(small, radius, sharpness, alpha, tensor_sigma, noise)
    if scale < 1.0:
        # Plain bilinear rather than guided upsampling: a guided upsampler fits the result as a
        # linear function of the full-size frame and so puts back the frame's fine texture,
        # exactly what the filter took out; the painterly result is smooth, so bilinear loses
        # little of it.
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
    return out.clamp_(0.0, 1.0)


def _filter(
    x: torch.Tensor, radius: float, sharpness: float, alpha: float, tensor_sigma: float, noise: float
) -> torch.Tensor:
    """The anisotropic Kuwahara filter of x [B, 3, h, w] at its own size."""
    b, _, h, w = x.shape
    # in float32 at least: sample positions need finer steps than float16 has near 1 (a
    # quarter pixel at 854 wide), and the sector statistics its range
    work = torch.promote_types(x.dtype, torch.float32)
    source = x.to(work)
    # Per pixel the six numbers that place its samples: its centre and its ellipse's major and
    # minor semi-axes, in grid_sample's coordinates (align_corners=False: -1 and 1 are the outer
    # edges of the border pixels, a pixel is 2 / w wide).
    xs = (torch.arange(w, device=x.device, dtype=work) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=x.device, dtype=work) * 2 + 1) / h - 1
    centre = torch.stack(torch.broadcast_tensors(xs.view(1, w), ys.view(h, 1))).expand(b, 2, h, w)
    step = torch.tensor([2.0 / w, 2.0 / h] * 2, device=x.device, dtype=work).view(1, 4, 1, 1)
    axes = _ellipse_axes(source, radius, alpha, tensor_sigma) * step
    placement = torch.cat([centre, axes], dim=1).permute(0, 2, 3, 1).contiguous()  # [B, h, w, 6]
    layout = _layout(x.device, work)
    weights = _sector_weights(x.device, work).t()  # [M, SECTORS]

    out = torch.empty_like(source)
    chunk = max(1, CHUNK_PIXELS.get(x.device.type, CHUNK_PIXELS_ELSEWHERE) // (b * w))
    for top in range(0, h, chunk):
        rows = slice(top, min(top + chunk, h))
        out[:, :, rows] = _filter_rows(
            source, source[:, :, rows], placement[:, rows], layout, weights, sharpness, noise
        )
    return out.to(x.dtype)


def _filter_rows(
    x: torch.Tensor,
    here: torch.Tensor,
    placement: torch.Tensor,
    layout: torch.Tensor,
    weights: torch.Tensor,
    sharpness: float,
    noise: float,
) -> torch.Tensor:
    """Some rows of the filtered x [B, C, h, w]: here [B, C, rows, w] are their pixels' values,
    placement [B, rows, w, 6] their centres and ellipses, layout [6, 2M] maps those to the M
    sample positions and weights [M, SECTORS] are the sectors' weights of the samples.
    -> [B, C, rows, w]."""
    b, c = x.shape[:2]
    rows, w = placement.shape[1:3]
    m = weights.shape[0]
    # Sample positions centre + u * major + v * minor as one matrix product, laid out
    # [B, rows, w, M, 2]: a pixel's samples side by side, which keeps grid_sample's reads
    # local and makes the sector sums one matrix product over the last dimension.
    grid = (placement.reshape(-1, 6) @ layout).view(b, rows, w * m, 2)
    samples = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Differences to the pixel itself rather than raw values: a variance is then the mean of
    # small squares minus a small square, which stays accurate where matrix products round
    # their inputs (TF32 on CUDA keeps 10 bits), instead of two near-equal large numbers.
    diffs = samples.view(b, c, rows, w, m).sub_(here[..., None]).view(b, c, rows, w * m)
    mean = _sector_sums(diffs, weights)  # [B, C, rows * w, S], relative to the pixel
    variance = (_sector_sums(diffs.square_(), weights) - mean.square()).sum(dim=1).clamp_min(0.0)

    # The paper's weights 1 / (1 + (s / noise)^q), taken in the log domain and scaled so the
    # largest is 1: with a high q and a low noise level (s / noise)^q overflows, every weight
    # would be 0 and the blend 0 / 0.
    log_ratio = torch.log(variance + 1e-3 * noise * noise) - 2 * math.log(noise)
    log_weight = -F.softplus(log_ratio * (sharpness / 2))
    sector = torch.exp(log_weight - log_weight.amax(dim=-1, keepdim=True))  # [B, P, S], max 1
    blended = (mean * sector[:, None]).sum(dim=-1) / sector.sum(dim=-1)[:, None]  # [B, C, P]
    return here + blended.view(b, c, rows, w)


def _sector_sums(samples: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """samples [B, C, rows, w * M] (a pixel's M samples side by side) -> their weighted sums for
    every sector, [B, C, rows * w, S].

    Two pixels to a row of the product, against a block-diagonal weight matrix: MKL's matrix
    product is three times slower with 8 output columns than with 16 (measured on this code's
    shapes), and the view costs nothing.
    """
    b, c = samples.shape[:2]
    m, s = weights.shape
    pixels = samples.numel() // (b * c * m)
    if (b * c * pixels) % 2 == 0:
        pairs = samples.reshape(-1, 2 * m) @ torch.block_diag(weights, weights)
        return pairs.view(b, c, pixels, s)
    return samples.reshape(b, c, pixels, m) @ weights


def _ellipse_axes(x: torch.Tensor, radius: float, alpha: float, tensor_sigma: float) -> torch.Tensor:
    """Per pixel the ellipse's two semi-axes as image vectors in pixels: [B, 4, h, w] holding
    (major x, major y, minor x, minor y); the major axis runs along the local edge direction.

    The structure tensor of the luminance (Sobel derivatives) is smoothed with a Gaussian at half
    the size (it is smooth anyway, so a quarter of the pixels suffice) and upsampled; its
    eigen-decomposition gives the edge direction and the anisotropy A = (l1 - l2) / (l1 + l2).
    The tensor, not the angle, is upsampled: angles wrap and would average wrongly.
    """
    h, w = x.shape[-2:]
    y = luma(x)
    half = y
    sigma = tensor_sigma
    if min(h, w) >= 64:
        half = F.interpolate(y, size=(max(1, h // 2), max(1, w // 2)), mode="area")
        sigma = tensor_sigma / 2
    padded = F.pad(half, (1, 1, 1, 1), mode="replicate")
    gx = _sobel(padded, transpose=False)
    gy = _sobel(padded, transpose=True)
    tensor = gaussian_blur(torch.cat([gx * gx, gx * gy, gy * gy], dim=1), sigma)
    if tensor.shape[-2:] != (h, w):
        tensor = F.interpolate(tensor, size=(h, w), mode="bilinear", align_corners=False)
    e, f, g = tensor.split(1, dim=1)
    spread = torch.sqrt((e - g).square() + 4 * f.square())  # l1 - l2
    anisotropy = spread / (e + g + 1e-4)  # 0..1; the small constant keeps flat areas round
    # The gradient's direction is half the angle of (E - G, 2F); the edge runs across it.
    theta = 0.5 * torch.atan2(2 * f, e - g)
    tx, ty = -torch.sin(theta), torch.cos(theta)
    major = radius * (alpha + anisotropy) / alpha
    minor = radius * alpha / (alpha + anisotropy)
    return torch.cat([major * tx, major * ty, -minor * ty, minor * tx], dim=1)


def _sobel(padded: torch.Tensor, transpose: bool) -> torch.Tensor:
    """The Sobel derivative along x (or y with `transpose`) of a padded [B, 1, h+2, w+2] image."""
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=padded.dtype)
    if transpose:
        kernel = kernel.t()
    return F.conv2d(padded, kernel.to(padded.device).view(1, 1, 3, 3) / 8)


@functools.lru_cache(maxsize=8)
def _layout(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[6, 2M]: the map from a pixel's (centre x, centre y, major x, major y, minor x, minor y)
    to its M sample positions (x, y) centre + u * major + v * minor, (u, v) the disc's points."""
    columns = []
    for (u, v), _ in _points()[1:]:  # the centre is not sampled: see _sector_weights
        columns.append([1.0, 0.0, u, 0.0, v, 0.0])  # x
        columns.append([0.0, 1.0, 0.0, u, 0.0, v])  # y
    return torch.tensor(columns).t().contiguous().to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=8)
def _sector_weights(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[SECTORS, M]: each sector's weight for each sample point but the centre, every row
    summing to 1 with the centre's share.

    A point's weight is the area it stands for (ring radius x ring spacing x angle step, the
    quadrature of the disc in polar coordinates), times the radial Gaussian decay, times the
    sector's smoothed indicator at the point's angle: the indicator of the 45-degree sector
    convolved with an angular Gaussian, which for all 8 sectors sums to 1 at every angle (the
    sectors overlap smoothly and share out every point). The centre point belongs to all.
    """
    width = 2 * math.pi / SECTORS
    spread = SECTOR_SMOOTHING * width * math.sqrt(2)
    table = []
    for (u, v), area in _points():
        rho = math.hypot(u, v)
        radial = area * math.exp(-(rho * rho) / (2 * RADIAL_SIGMA * RADIAL_SIGMA))
        angle = math.atan2(v, u)
        column = []
        for i in range(SECTORS):
            if rho == 0.0:
                column.append(radial / SECTORS)
                continue
            delta = math.remainder(angle - i * width, 2 * math.pi)  # -pi..pi from the sector's axis
            share = 0.5 * (math.erf((delta + width / 2) / spread) - math.erf((delta - width / 2) / spread))
            column.append(radial * share)
        table.append(column)
    weights = torch.tensor(table).t()  # [SECTORS, M], float32 on the CPU
    weights = weights / weights.sum(dim=1, keepdim=True)
    # The centre's column dropped after the normalisation: the statistics are taken of the
    # samples' differences to the pixel, which at the centre are 0 and add nothing but weight.
    return weights[:, 1:].contiguous().to(device=device, dtype=dtype)


def _points() -> list[tuple[tuple[float, float], float]]:
    """The disc's sample points with the area each stands for, the centre first."""
    radii = [r for r, _ in RINGS]
    points = []
    for k, (rho, count) in enumerate(RINGS):
        if rho == 0.0:
            # the centre stands for the disc out to halfway to the first ring
            reach = radii[k + 1] / 2 if k + 1 < len(radii) else 1.0
            points.append(((0.0, 0.0), math.pi * reach * reach))
            continue
        inner = (rho + radii[k - 1]) / 2 if k > 0 else 0.0
        outer = (rho + radii[k + 1]) / 2 if k + 1 < len(radii) else 1.0
        area = math.pi * (outer * outer - inner * inner) / count
        # placed symmetrically about every sector's axis, none on a sector's edge
        for j in range(count):
            angle = 2 * math.pi * (j + 0.5) / count - math.pi / SECTORS
            points.append(((rho * math.cos(angle), rho * math.sin(angle)), area))
    return points
