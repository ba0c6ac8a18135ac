"""Composites of a frame with its person alpha (and a styled frame or a second picture), as
batched torch ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.colour import luma
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


def styled_people(frames: torch.Tensor, styled: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The styled people over the original frame: alpha * people + (1 - alpha) * frame.

    The style ran on the whole frame, so along the person's outline its pixels mix the person
    with the styled background, and many styles draw a dark stroke on every strong edge, the
    silhouette included. Used as is under the matte's soft edge, that shows as a halo or a dark
    fringe on the original background. So the people's colours in the edge band are taken from
    a little inside the person instead (`_pulled_in`); the matte's soft edge is kept as it is.
    """
    people = _pulled_in(styled, alpha)
    return alpha * people + (1 - alpha) * frames


def styled_background(frames: torch.Tensor, styled: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The original people over the styled frame, the styled background's colours near the
    outline taken from away from the person (the mirror of `styled_people`)."""
    background = _pulled_in(styled, 1 - alpha)
    return alpha * frames + (1 - alpha) * background


# How deep inside the matte the carried colours come from, as shares of the short side (at
# 1080p: 3 and 6 px): the deeper where the person is wide enough, the shallower in thin parts.
# Deeper reaches (tried up to 2 %, 22 px) clean a synthetic stroke better but, on real mattes,
# whose soft edge is several pixels wide, they paint a flat glow of the person's mean colour
# around them and smooth away the style's texture near the outline (bench/recipe_sheet.py).
REACHES = (0.003, 0.006)
KEEP_REACH = 0.003  # the styled image itself is kept from this deep in: its texture, not a mean


def _pulled_in(
    image: torch.Tensor, alpha: torch.Tensor, reaches: tuple[float, ...] = REACHES
) -> torch.Tensor:
    """`image` well inside `alpha`, and near and across its edge colours carried in from there.

    The inside is the matte eroded by a reach, deep enough that a style's stroke along the
    outline and the background colours it mixed in lie outside it. A normalised convolution,
    blur(image * core) / blur(core), then gives the mean colour of the nearby inside: the
    foreground estimate of blur-fusion matting (Germer et al., "Fast Multi-Level Foreground
    Estimation", 2020), here from an eroded core. Each deeper reach overrides the shallower
    where it has a core nearby; thin parts (fingers, hair) keep the shallow estimate, and
    where no inside is near at all (wisps, a tiny person) the image is kept as it is. It runs
    at half size.
    """
    h, w = image.shape[-2:]
    factor = 2 if min(h, w) >= 64 else 1
    small = (max(1, h // factor), max(1, w // factor))
    a = F.interpolate(alpha, size=small, mode="area")
    colours = F.interpolate(image, size=small, mode="area")
    estimate = colours
    kept = torch.ones_like(a)  # where the image itself is kept: the deepest core
    for reach in reaches:
        radius = max(1, round(reach * min(small)))
        core = (-F.max_pool2d(-a, 2 * radius + 1, stride=1, padding=radius)).square()  # erosion
        sigma = 1.5 * radius  # the window reaches past the eroded band into the core
        mass = gaussian_blur(core, sigma)
        inside = (gaussian_blur(colours * core, sigma) / mass.clamp_min(1e-3)).clamp(0, 1)
        estimate = torch.lerp(estimate, inside, (mass * 20).clamp(0, 1))  # where a core is near
        if reach <= KEEP_REACH:
            kept = core
    # The estimate only where the image is not deep inside: there the image is kept exactly.
    low = F.interpolate(
        torch.lerp(estimate, colours, kept), size=(h, w), mode="bilinear", align_corners=False
    )
    detail = F.interpolate(kept, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    return torch.lerp(low, image, detail)


def double_exposure(frames: torch.Tensor, second: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The people's silhouette filled with `second`, as a double-exposure photograph.

    The darkroom (and layer) recipe: a high-key black-and-white portrait on white, exposed
    together with a second picture, which is a Screen blend, 1 - (1 - a)(1 - b). White stays
    white, so outside the silhouette the picture is a white backdrop; inside, the second
    picture shows through the portrait's darks and fades into its highlights, so the face's
    features stay readable.
    """
    grey = luma(frames)
    # A steeper tone curve around the portrait's mid-grey: the classic look is high contrast.
    portrait = torch.sigmoid((grey - 0.5) * 6.0)
    portrait = alpha * portrait + (1 - alpha)  # on white
    return 1 - (1 - portrait) * (1 - second)
