"""Composites of styled frames with a person matte, on a real frame and its hand-made mask."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from models.cartoon import cartoon
from models.composite import double_exposure, styled_background, styled_people

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"


def frame_and_alpha() -> tuple[torch.Tensor, torch.Tensor]:
    """A DAVIS frame cropped to the person and scaled to 480 high (a person filling the frame,
    as in a portrait), its hand-made mask softened into an alpha with a few pixels of edge."""
    rgb = np.asarray(Image.open(DAVIS / "images" / "lucia" / "00020.jpg").convert("RGB"))
    mask = np.asarray(Image.open(DAVIS / "masks" / "lucia" / "00020.png")).astype(np.float32) / 255
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = max(0, ys.min() - 20), ys.max() + 20, max(0, xs.min() - 40), xs.max() + 40
    size = (round((x1 - x0) * 480 / (y1 - y0)), 480)
    rgb = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_CUBIC)
    mask = cv2.resize(mask[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(mask, (0, 0), 2.0)
    frames = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    return frames.clamp(0, 1), torch.from_numpy(alpha).clamp(0, 1)[None, None]


def painted(alpha: torch.Tensor, inside: tuple[float, ...], outside: tuple[float, ...]) -> torch.Tensor:
    """What a style does around a silhouette, in a form whose right answer is known: the person
    painted one colour and the background another, mixed across the outline (networks see
    both sides), with a dark stroke along it (many styles ink every strong edge)."""
    person = (alpha > 0.5).float()
    flat = (
        person * torch.tensor(inside)[None, :, None, None]
        + (1 - person) * torch.tensor(outside)[None, :, None, None]
    )
    mixed = torch.from_numpy(cv2.GaussianBlur(flat[0].permute(1, 2, 0).numpy(), (0, 0), 1)).permute(2, 0, 1)[
        None
    ]
    band = ((alpha > 0.1) & (alpha < 0.9)).float()
    band = torch.nn.functional.max_pool2d(band, 3, stride=1, padding=1)
    return mixed * (1 - 0.8 * band)


INSIDE, OUTSIDE = (0.9, 0.6, 0.3), (0.2, 0.5, 0.9)


def edge_error(result: torch.Tensor, ideal: torch.Tensor, alpha: torch.Tensor) -> float:
    edge = (alpha > 0.02) & (alpha < 0.98)
    return float((result - ideal).abs().mean(1, keepdim=True)[edge].mean())


def test_styled_people_are_pasted_with_less_halo_and_dark_fringe() -> None:
    frames, alpha = frame_and_alpha()
    styled = painted(alpha, INSIDE, OUTSIDE)
    # the painted person, as matted over the original: what the edge should look like
    ideal = alpha * torch.tensor(INSIDE)[None, :, None, None] + (1 - alpha) * frames
    naive = alpha * styled + (1 - alpha) * frames
    ours = styled_people(frames, styled, alpha)
    assert edge_error(ours, ideal, alpha) < 0.8 * edge_error(naive, ideal, alpha)


def test_styled_background_takes_the_backgrounds_colours_at_the_edge() -> None:
    frames, alpha = frame_and_alpha()
    styled = painted(alpha, INSIDE, OUTSIDE)
    ideal = alpha * frames + (1 - alpha) * torch.tensor(OUTSIDE)[None, :, None, None]
    naive = alpha * frames + (1 - alpha) * styled
    ours = styled_background(frames, styled, alpha)
    assert edge_error(ours, ideal, alpha) < 0.8 * edge_error(naive, ideal, alpha)


def test_away_from_the_edge_each_side_is_kept_exactly() -> None:
    frames, alpha = frame_and_alpha()
    styled = cartoon(frames)
    out = styled_people(frames, styled, alpha)
    outside = (alpha == 0).expand_as(out)
    assert torch.equal(out[outside], frames[outside])
    # well inside (10 px from any edge), the styled frame as it is
    deep = (-torch.nn.functional.max_pool2d(-alpha, 21, stride=1, padding=10) == 1).expand_as(out)
    assert deep.any() and (out - styled)[deep].abs().max() < 1e-5
    back = styled_background(frames, styled, alpha)
    assert (back - frames)[(alpha == 1).expand_as(out)].abs().max() < 1e-6


def test_double_exposure_is_white_outside_and_shows_the_second_picture_inside() -> None:
    frames, alpha = frame_and_alpha()
    second = torch.zeros_like(frames)
    second[:, 2] = 0.8  # blue
    out = double_exposure(frames, second, alpha)
    assert torch.all(out[(alpha == 0).expand_as(out)] == 1)
    inside = (alpha == 1)[0, 0]
    blue_minus_red = (out[0, 2] - out[0, 0])[inside]
    assert blue_minus_red.mean() > 0.2  # the blue shows through the portrait's darks
    assert torch.all(out >= 0) and torch.all(out <= 1)
