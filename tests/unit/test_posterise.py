"""Posterise and stencil on real frames and their hand-made person masks (DAVIS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.colour import luma
from models.filters import gaussian_blur
from models.posterise import paper_texture, posterise, stencil

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"
INK, PAPER = (0.10, 0.12, 0.22), (0.96, 0.93, 0.85)


def frame_and_alpha(
    sequence: str = "breakdance-flare", name: str = "00020"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A DAVIS frame [1, 3, 480, 854] and its mask softened into an alpha with a few pixels of
    soft edge [1, 1, 480, 854]."""
    rgb = np.asarray(Image.open(DAVIS / "images" / sequence / f"{name}.jpg").convert("RGB"))
    mask = np.asarray(Image.open(DAVIS / "masks" / sequence / f"{name}.png")).astype(np.float32) / 255
    frames = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    alpha = gaussian_blur(torch.from_numpy(mask.copy())[None, None], 1.5).clamp(0, 1)
    return frames, alpha


def tone_colours(tones: int) -> torch.Tensor:
    """The stencil's documented tones, ink + (paper - ink) * k / n: [n, 3]."""
    ink, paper = torch.tensor(INK), torch.tensor(PAPER)
    return torch.stack([ink + (paper - ink) * k / tones for k in range(tones)])


def tone_shares(out: torch.Tensor, alpha: torch.Tensor, tones: int, near: float = 0.03) -> list[float]:
    """Of the pixels well inside the matte, the share within `near` (RGB distance) of each tone."""
    inside = (alpha[0, 0] > 0.99).flatten()
    pixels = out[0].flatten(1).t()[inside]  # [N, 3]
    distance = torch.cdist(pixels, tone_colours(tones))  # [N, n]
    return [float((distance[:, k] < near).float().mean()) for k in range(tones)]


# posterise


def test_posterise_reduces_the_luminance_to_its_levels() -> None:
    x, _ = frame_and_alpha()
    levels = 4
    y_in, y_out = luma(x), luma(posterise(x, levels))

    def near_a_level(y: torch.Tensor) -> float:
        # the cartoon's soft steps flatten out halfway between multiples of 1 / levels
        offset = (y * levels - 0.5 - torch.round(y * levels - 0.5)).abs() / levels
        return float((offset < 0.02).float().mean())

    def fullest_bins(y: torch.Tensor) -> float:
        """The share of the pixels in the 2 * levels fullest of 100 luminance bins."""
        hist = torch.histc(y, bins=100, min=0, max=1)
        return float(hist.sort(descending=True).values[: 2 * levels].sum() / y.numel())

    assert near_a_level(y_out) > 0.85 and near_a_level(y_in) < 0.3
    assert fullest_bins(y_out) > 0.75 and fullest_bins(y_in) < 0.4


def test_posterise_flattens_regions_and_keeps_the_shape() -> None:
    x, _ = frame_and_alpha()
    out = posterise(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1

    def local_std(img: torch.Tensor) -> torch.Tensor:
        y = luma(img)
        mean = torch.nn.functional.avg_pool2d(y, 7, 1, 3, count_include_pad=False)
        sq = torch.nn.functional.avg_pool2d(y * y, 7, 1, 3, count_include_pad=False)
        return (sq - mean * mean).clamp_min(0).sqrt()

    # in most places the picture is flat: the median local variation falls to a fraction
    assert local_std(out).median() < 0.3 * local_std(x).median()
    # and it is still the same picture: coarse luminance follows the input
    coarse_in = torch.nn.functional.avg_pool2d(luma(x), 16)
    coarse_out = torch.nn.functional.avg_pool2d(luma(out), 16)
    assert torch.corrcoef(torch.stack([coarse_in.flatten(), coarse_out.flatten()]))[0, 1] > 0.9


def test_posterise_is_deterministic_and_runs_in_half_precision() -> None:
    x, _ = frame_and_alpha()
    batch = torch.cat([x, x.flip(-1)])
    assert torch.equal(posterise(batch), posterise(batch))
    half = posterise(x.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    with pytest.raises(ValueError, match="2 levels"):
        posterise(x, levels=1)


# stencil


@pytest.mark.parametrize("tones", [2, 3])
def test_stencil_draws_the_people_in_the_asked_number_of_tones(tones: int) -> None:
    x, alpha = frame_and_alpha()
    out = stencil(x, alpha, tones=tones, ink=INK, paper=PAPER)
    shares = tone_shares(out, alpha, tones)
    # nearly every pixel inside is one of the tones (the rest on the soft steps between them),
    # and the thresholds at the quantiles give each tone a fair share of the person
    assert sum(shares) > 0.85
    assert min(shares) > 0.6 / tones


def test_stencil_tones_adapt_to_dark_and_bright_footage() -> None:
    x, alpha = frame_and_alpha()
    for footage in (x * 0.35, 0.6 + 0.4 * x):  # underexposed, washed out
        shares = tone_shares(stencil(footage, alpha, tones=3, ink=INK, paper=PAPER), alpha, 3)
        assert sum(shares) > 0.85 and min(shares) > 0.2


def test_stencil_paper_where_alpha_is_zero() -> None:
    x, alpha = frame_and_alpha()
    outside = alpha[0, 0] == 0
    plain = stencil(x, alpha, ink=INK, paper=PAPER, texture=False)
    assert torch.allclose(plain[0][:, outside], torch.tensor(PAPER)[:, None], atol=1e-6)

    textured = stencil(x, alpha, ink=INK, paper=PAPER)
    ground = textured[0][:, outside]
    # paper on average, with a visible grain that is not the frame's content
    assert torch.allclose(ground.mean(dim=1), torch.tensor(PAPER), atol=0.01)
    assert 0.005 < (ground / torch.tensor(PAPER)[:, None]).std() < 0.04
    background_in = luma(x)[0, 0][outside]
    background_out = luma(textured)[0, 0][outside]
    assert abs(float(torch.corrcoef(torch.stack([background_in, background_out]))[0, 1])) < 0.1


def test_stencil_texture_is_the_same_on_every_frame_and_call() -> None:
    x, alpha = frame_and_alpha()
    y, beta = frame_and_alpha("hockey", "00040")
    first = stencil(torch.cat([x, y]), torch.cat([alpha, beta]))
    second = stencil(torch.cat([x, y]), torch.cat([alpha, beta]))
    assert torch.equal(first, second)
    outside = (alpha[0, 0] == 0) & (beta[0, 0] == 0)
    assert torch.equal(first[0][:, outside], first[1][:, outside])  # no flicker between frames
    assert torch.equal(paper_texture(480, 854, x.device, x.dtype), paper_texture(480, 854, x.device, x.dtype))
    paper_texture.cache_clear()  # made again from the seed: the same grain
    assert torch.equal(first[0][:, outside], stencil(x, alpha)[0][:, outside])


def test_stencil_composites_by_alpha_keeping_the_soft_edge() -> None:
    x, alpha = frame_and_alpha()
    paper = torch.tensor(PAPER).view(1, 3, 1, 1)
    full = stencil(x, alpha, paper=PAPER, texture=False)
    half = stencil(x, alpha * 0.5, paper=PAPER, texture=False)  # the same quantiles, half the cover
    # the result is paper + alpha * (figure - paper): halving alpha halves the departure from
    # paper everywhere, in the soft edge too
    difference = ((half - paper) - 0.5 * (full - paper)).abs()
    assert (difference < 1e-3).float().mean() > 0.99
    edge = (alpha > 0.05) & (alpha < 0.95)
    assert edge.sum() > 500
    # in the soft edge the result lies between the paper and the people's tones
    departure = (full - paper).abs().amax(dim=1, keepdim=True)
    assert (departure[edge] < alpha[edge] * 0.9).all()
    assert (departure[edge] > 0).float().mean() > 0.95


def test_stencil_without_people_is_paper_and_checks_its_input() -> None:
    x, alpha = frame_and_alpha()
    out = stencil(x, torch.zeros_like(alpha), texture=False, paper=PAPER)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.tensor(PAPER).view(1, 3, 1, 1).expand_as(out), atol=1e-6)
    with pytest.raises(ValueError, match="2 or 3 tones"):
        stencil(x, alpha, tones=4)
    with pytest.raises(ValueError, match="does not match"):
        stencil(x, alpha[..., :100])


def test_stencil_in_half_precision() -> None:
    x, alpha = frame_and_alpha()
    half = stencil(x.half(), alpha.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert (half.float() - stencil(x, alpha)).abs().mean() < 0.01
