"""The style runner: every style named by the orchestrator exists, and the options every
style takes (working size, preserve colour, strength) do what they say on a real frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models import styles
from models.colour import luma
from orchestrator import styles as named

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"


def frame() -> torch.Tensor:
    rgb = np.asarray(Image.open(DAVIS / "images" / "hockey" / "00012.jpg").convert("RGB").resize((214, 120)))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


def test_every_builtin_the_orchestrator_names_is_implemented() -> None:
    assert set(named.BUILTIN) == set(styles.BUILTIN)


def test_a_style_runs_at_its_working_size_and_returns_the_frames_size() -> None:
    seen: list[tuple[int, ...]] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape[-2:]))
        return 1 - x

    x = frame()
    out = styles.Styler(run, styles.Options(size=60))(x)
    assert seen == [(60, 107)] and out.shape == x.shape
    styles.Styler(run, styles.Options(size=720))(x)  # never above the frame's own size
    assert seen[-1] == (120, 214)


def test_preserve_colour_keeps_chroma_and_takes_the_styled_luma() -> None:
    x = frame()
    styled = styles.Styler(lambda f: f.flip(-1) * 0.8, styles.Options(preserve_colour=True))(x)
    # BT.601: the chroma offset of each channel, rgb - luma, is the original's (where unclamped)
    ok = ((styled > 0.001) & (styled < 0.999)).all(dim=1, keepdim=True).expand_as(styled)
    assert ((styled - luma(styled)) - (x - luma(x)))[ok].abs().max() < 1e-4
    assert (luma(styled) - luma(x.flip(-1) * 0.8)).abs().mean() < 0.01


def test_strength_mixes_with_the_original() -> None:
    x = frame()
    half = styles.Styler(lambda f: 1 - f, styles.Options(strength=0.5))(x)
    assert torch.allclose(half, torch.full_like(x, 0.5), atol=1e-6)


def test_a_blend_of_the_pretrained_styles_runs_on_the_frame() -> None:
    x = frame()
    out = styles.multistyle([[3, 0.5], [12, 0.5]], torch.device("cpu"), styles.Options())(x)
    assert out.shape == x.shape and (out - x).abs().mean() > 0.05
