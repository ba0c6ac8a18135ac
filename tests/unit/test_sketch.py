"""The pencil sketch on real frames: grey, paper-white where the frame is flat, graphite on edges."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from frameq.samples import sample_clip
from models.colour import luma
from models.filters import gaussian_blur
from models.sketch import pencil

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"


def frame(sequence: str = "breakdance-flare", name: str = "00020") -> torch.Tensor:
    rgb = np.asarray(Image.open(DAVIS / "images" / sequence / f"{name}.jpg").convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


def local_gradient(y: torch.Tensor) -> torch.Tensor:
    """The largest luminance step to a neighbour, per pixel, [B, 1, H, W] (edges high)."""
    smooth = gaussian_blur(y, 1.0)
    dx = (smooth[..., :, 1:] - smooth[..., :, :-1]).abs()
    dy = (smooth[..., 1:, :] - smooth[..., :-1, :]).abs()
    out = torch.zeros_like(y)
    out[..., :, 1:] = dx
    out[..., 1:, :] = torch.maximum(out[..., 1:, :], dy)
    return out


def test_shape_range_and_grey() -> None:
    x = torch.cat([frame(), frame("lucia", "00000")])
    y = pencil(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])  # grey


def test_white_on_flat_areas_dark_on_edges() -> None:
    x = frame()
    y = pencil(x)[:, :1]
    gradient = local_gradient(luma(x))
    flat = gradient < gradient.quantile(0.2)
    edges = gradient > gradient.flatten().kthvalue(int(0.97 * gradient.numel())).values
    bright_flat = flat & (gaussian_blur(luma(x), 3.0) > 0.5)
    assert bright_flat.sum() > 5000
    assert y[bright_flat].median() > 0.97  # the paper
    assert (y[bright_flat] > 0.9).float().mean() > 0.9
    # A line runs along the dark side of every edge: the darkest pixel within 2 of an edge
    # pixel is graphite, while flat areas hold none.
    darkest = -F.max_pool2d(-y, 5, stride=1, padding=2)
    assert darkest[edges].median() < 0.4
    assert darkest[bright_flat].median() > 0.95


def test_lines_follow_a_real_edge() -> None:
    # The dancer's white trousers against the dark wall: a strong edge the sketch must draw,
    # with paper on the flat trouser cloth beside it.
    x = frame()
    y = pencil(x)[0, 0]
    g = local_gradient(luma(x))[0, 0]
    row = 200  # a row across the raised leg
    strongest = int(g[row, 550:700].argmax()) + 550
    assert y[row, strongest - 3 : strongest + 4].min() < 0.5


def test_warm_paper_tints_the_paper_only() -> None:
    x = frame()
    paper = (1.0, 0.95, 0.85)
    grey = pencil(x)
    warm = pencil(x, paper=paper)
    expected = grey * torch.tensor(paper).view(1, 3, 1, 1)
    assert torch.allclose(warm, expected, atol=1e-6)
    assert (warm[:, 0] >= warm[:, 2]).all()


def test_line_width_scales_with_the_frame() -> None:
    # A real 720p frame and the same frame at 360p: above the reference size the Gaussians
    # grow with the frame, so the 720p sketch, scaled down, is close to the 360p one (with the
    # sigmas fixed in pixels its lines would be half as wide and the difference twice as large).
    with av.open(str(sample_clip("bigbuckbunny"))) as container:
        rgb = next(f for i, f in enumerate(container.decode(video=0)) if i == 40).to_ndarray(format="rgb24")
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    small = pencil(F.interpolate(x, scale_factor=0.5, mode="area"))
    large = F.interpolate(pencil(x), size=small.shape[-2:], mode="area")
    assert (large - small).abs().mean() < 0.045


def test_deterministic_batch_independent_and_half_precision() -> None:
    x = torch.cat([frame(), frame("hockey", "00040")])
    assert torch.equal(pencil(x), pencil(x))
    assert torch.allclose(pencil(x)[1:], pencil(x[1:]), atol=1e-6)
    half = pencil(x.half())
    assert half.dtype == torch.float16
    assert torch.isfinite(half).all()
    assert (half.float() - pencil(x)).abs().mean() < 0.01
