"""The anisotropic Kuwahara filter on real frames: texture flattened, edges kept sharper than a
Gaussian blur that flattens as much, ellipses along the edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from models.colour import luma
from models.filters import gaussian_blur
from models.kuwahara import _ellipse_axes, _sector_weights, kuwahara

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"


def frame(sequence: str = "breakdance-flare", name: str = "00020") -> torch.Tensor:
    rgb = np.asarray(Image.open(DAVIS / "images" / sequence / f"{name}.jpg").convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def dancer() -> tuple[torch.Tensor, torch.Tensor]:
    """A real frame (stone wall, gravel, flowers, a dancer) and its filtered version."""
    x = frame()
    return x, kuwahara(x)


def local_std(img: torch.Tensor) -> torch.Tensor:
    """The luminance's standard deviation in 5x5 windows, [B, 1, H, W]."""
    y = luma(img)
    mean = F.avg_pool2d(y, 5, 1, 2, count_include_pad=False)
    sq = F.avg_pool2d(y * y, 5, 1, 2, count_include_pad=False)
    return (sq - mean * mean).clamp_min(0).sqrt()


def gradient(img: torch.Tensor) -> torch.Tensor:
    """The luminance's gradient magnitude (central differences), [B, 1, H, W]."""
    y = F.pad(luma(img), (1, 1, 1, 1), mode="replicate")
    gx = (y[..., 1:-1, 2:] - y[..., 1:-1, :-2]) / 2
    gy = (y[..., 2:, 1:-1] - y[..., :-2, 1:-1]) / 2
    return torch.sqrt(gx * gx + gy * gy)


def test_shape_range_and_determinism(dancer: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, out = dancer
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(kuwahara(x), out)


def test_texture_is_flattened(dancer: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, out = dancer
    assert local_std(out).median() < 0.5 * local_std(x).median()
    # the gravel (bottom right), a fine texture, most of all
    assert local_std(out)[..., 380:470, 650:840].median() < 0.4 * local_std(x)[..., 380:470, 650:840].median()


def test_edges_stay_sharper_than_a_blur_that_flattens_as_much(
    dancer: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, out = dancer
    flatness = float(local_std(out).median())
    # the narrowest Gaussian whose result is at least as flat as the filter's
    sigma = next(
        s for s in np.arange(0.5, 6.01, 0.25) if float(local_std(gaussian_blur(x, s)).median()) <= flatness
    )
    blurred = gaussian_blur(x, float(sigma))
    # the strongest edges of the frame: 2 % of its pixels, as the smoothed input shows them
    g = gradient(gaussian_blur(x, 1.0))
    edges = g >= g.flatten().kthvalue(int(0.98 * g.numel())).values
    # the edge contrast across 3 pixels, which a blur spreads out and the filter keeps
    span = F.max_pool2d(luma(out), 3, 1, 1) + F.max_pool2d(-luma(out), 3, 1, 1)
    span_blur = F.max_pool2d(luma(blurred), 3, 1, 1) + F.max_pool2d(-luma(blurred), 3, 1, 1)
    assert sigma >= 1.0
    assert span[edges].median() > 1.3 * span_blur[edges].median()
    assert gradient(out)[edges].mean() > 1.3 * gradient(blurred)[edges].mean()


def test_ellipses_run_along_the_edges_and_are_round_on_flat_ground() -> None:
    x = frame()
    axes = _ellipse_axes(x, 5.0, 1.0, 2.0)  # [1, 4, H, W]: major (x, y), minor (x, y)
    major, minor = axes[:, :2], axes[:, 2:]
    length, width = major.norm(dim=1, keepdim=True), minor.norm(dim=1, keepdim=True)
    assert torch.allclose(length * width, torch.full_like(length, 25.0), rtol=1e-3)  # area kept
    # at the strongest edges the major axis is across the gradient, i.e. along the edge
    y = F.pad(gaussian_blur(luma(x), 2.0), (1, 1, 1, 1), mode="replicate")
    gx = (y[..., 1:-1, 2:] - y[..., 1:-1, :-2]) / 2
    gy = (y[..., 2:, 1:-1] - y[..., :-2, 1:-1]) / 2
    g = torch.sqrt(gx * gx + gy * gy)
    edges = g >= g.flatten().kthvalue(int(0.98 * g.numel())).values
    cosine = (major[:, :1] * gx + major[:, 1:] * gy).abs() / (length * g + 1e-9)
    assert (cosine[edges] < 0.3).float().mean() > 0.9
    # and the ellipse is stretched there, more than on the flattest tenth of the frame
    flat = g <= g.flatten().kthvalue(int(0.1 * g.numel())).values
    assert length[edges].median() > 8.0
    assert length[edges].median() > length[flat].median() + 2.0


def test_sector_weights_share_out_every_sample() -> None:
    weights = _sector_weights(torch.device("cpu"), torch.float32)  # [8, M], the centre left out
    # every sector the same total, short of 1 by the centre's share (a few per cent)
    totals = weights.sum(dim=1)
    assert torch.allclose(totals, totals[:1].expand(8)) and 0.9 < float(totals[0]) < 1.0
    # the sectors are rotations of one another: the same weights, in another order
    rows = weights.sort(dim=1).values
    assert torch.allclose(rows, rows[:1].expand_as(rows), atol=1e-6)
    assert (weights >= 0).all()


def test_large_frames_run_at_the_working_size_and_come_back_at_theirs(
    dancer: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # a 480-line frame with a 240-pixel working size: 4 times cheaper than 720p at 480
    x, full = dancer
    out = kuwahara(x, work_short_side=240)
    assert out.shape == x.shape
    # the same picture as filtering at 240 lines and scaling up
    small = kuwahara(F.interpolate(x, size=(240, 427), mode="area"))
    up = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert (out - up).abs().mean() < 0.002
    # and smoother than filtering at the full size, as a larger radius would be
    assert local_std(out).median() < local_std(full).median()


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (33, 47), (70, 90)])
def test_small_and_odd_sizes(size: tuple[int, int]) -> None:
    x = F.interpolate(frame(), size=size, mode="area")
    out = kuwahara(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_flat_frames_stay_flat_and_batches_are_independent() -> None:
    flat = torch.full((1, 3, 40, 60), 0.4)
    assert torch.allclose(kuwahara(flat), flat, atol=1e-5)
    x = frame()[..., :200, :300]
    y = frame("hockey", "00040")[..., :200, :300]
    both = kuwahara(torch.cat([x, y]))
    assert torch.allclose(both[1:], kuwahara(y), atol=1e-5)


def test_half_precision() -> None:
    x = frame()[..., 100:300, 300:600]
    half = kuwahara(x.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert (half.float() - kuwahara(x)).abs().mean() < 0.003
