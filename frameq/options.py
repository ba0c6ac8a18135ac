"""Options that `frameq run`, `submit` and `batch` share: what the recipe paints with and
over, and where in the picture it crops or removes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchestrator.background import parse_background
from orchestrator.masks import parse_mask
from orchestrator.params import PictureOptions, parse_point, parse_ratios
from orchestrator.styles import DEFAULT_STRENGTH, MAX_SIZE, MIN_SIZE, StyleChoice, parse_style

R = TypeVar("R")

BACKGROUND_HELP = (
    "bg-replace: #RRGGBB, R,G,B, a colour name, or an image or video file; "
    "double-exposure: the image or video inside the silhouette; stencil: the paper's colour."
)
STYLE_HELP = (
    "What style, portrait-style and style-background paint with: an index 0..25 or a blend "
    "(3:0.5,12:0.5) of the pretrained styles, a built-in (cartoon, pencil, posterise, "
    "painterly), a picture to take the style of, or a TransformerNet .pth checkpoint; "
    "`frameq styles` lists them."
)


def job_options(command: Callable[..., R]) -> Callable[..., R]:
    """Add --background, the style options, --ratio, --at and --person to a command (innermost first).
    The command gets them built: `background`, parse_background's result or None, `style`, a
    StyleChoice, and `picture`, PictureOptions."""

    @functools.wraps(command)
    def built(
        *args: Any,
        background: str | None,
        style: str | None,
        strength: float,
        preserve_colour: bool,
        style_size: int | None,
        no_stabilise: bool,
        ratio: str | None,
        at: str | None,
        strip_metadata: bool,
        srgb: bool,
        person: str | None,
        fine_edges: bool,
        mask: str | None,
        **kwargs: Any,
    ) -> R:
        choice = StyleChoice(
            style=parse_style(style) if style else None,
            strength=strength,
            preserve_colour=preserve_colour,
            size=style_size,
            stabilise=not no_stabilise,
        )
        backdrop = parse_background(background) if background else None
        ratios = parse_ratios(ratio) if ratio else ()
        picture = PictureOptions(
            ratios[0] if ratios else None,
            parse_point(at) if at else None,
            strip_metadata,
            srgb,
            parse_point(person) if person else None,
            fine_edges,
            parse_mask(mask) if mask else None,
            ratios[1:],
        )
        return command(*args, background=backdrop, style=choice, picture=picture, **kwargs)

    options = [
        click.option("--background", help=BACKGROUND_HELP),
        click.option("--style", help=STYLE_HELP),
        click.option(
            "--strength",
            type=click.FloatRange(0.0, 1.0),
            default=DEFAULT_STRENGTH,
            show_default=True,
            help="How much of the style: 0 is the original, 1 fully styled.",
        ),
        click.option("--preserve-colour", is_flag=True, help="Styled brightness, the original's colours."),
        click.option(
            "--style-size",
            type=click.IntRange(MIN_SIZE, MAX_SIZE),
            help="Short side the style runs at (bigger: finer strokes, slower); default 720, "
            "384 for a picture's style, the frame's own for built-ins.",
        ),
        click.option(
            "--no-stabilise", is_flag=True, help="Video: style each frame on its own (faster, flickers)."
        ),
        click.option(
            "--ratio",
            help="crop: the aspect ratio W:H to cut to (1:1, 4:5, 9:16, ...), or several comma-separated "
            "(run and submit: one output each, NAME.WxH.EXT); default 1:1.",
        ),
        click.option(
            "--at", help="inpaint: remove only the person (else the object) under X,Y; default: all."
        ),
        click.option(
            "--person",
            help="Matting recipes: only the person under X,Y (on the first frame), followed "
            "through a video (which then runs as one segment); default: everyone.",
        ),
        click.option(
            "--fine-edges",
            is_flag=True,
            help="Matting recipes: a portrait-matting network redraws the people's edges (hair gets "
            "partial opacity); ~0.1-0.6 s more a frame on the CPU.",
        ),
        click.option(
            "--mask",
            help="erase: what to remove, white on black: an image (one for every frame) or a "
            "video (a mask per frame), the picture's shape.",
        ),
        click.option(
            "--strip-metadata", is_flag=True, help="Images: leave the input's EXIF out of the output."
        ),
        click.option(
            "--srgb", is_flag=True, help="Images: colours converted to sRGB from the input's profile."
        ),
    ]
    decorated: Callable[..., R] = built
    for option in reversed(options):
        decorated = option(decorated)
    return decorated
