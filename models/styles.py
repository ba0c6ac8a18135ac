"""Every style as one callable over frames, with the options every style takes.

A `Styler` maps RGB [B, 3, H, W] in 0..1 to styled frames of the same size:
1. the frames are resized so their short side is the working size (stroke size depends on it;
   never above the frames' own), the style runs there, and the result is resized back;
2. preserve colour: the styled luminance with the original's colour (YCbCr chroma);
3. strength: a mix with the original (0: the original, 1: fully styled).

The styles: the 26 pretrained styles of the conditional-instance-norm network and blends of
them (models/multistyle.py), any picture as a style (models/arbitrary.py), user checkpoints of
the fast-neural-style TransformerNet (models/transformer_net.py), and filters without weights
(cartoon, pencil, posterise, painterly). Networks are loaded once per process and device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from models.cartoon import cartoon
from models.colour import luma
from models.device import compute_dtype
from models.kuwahara import kuwahara
from models.posterise import posterise
from models.sketch import pencil
from models.transformer_net import TransformerNet
from models.weights import model_path

if TYPE_CHECKING:  # the networks' modules read ONNX files (the onnx package takes seconds to
    # import): imported when a network style is first asked for, not for the built-in filters
    from models.arbitrary import ArbitraryStyle, StylePredictor
    from models.multistyle import MultiStyle

Frames = Callable[[torch.Tensor], torch.Tensor]

# Filters without weights; they pick their own working size (none: the frames' own).
BUILTIN: dict[str, Frames] = {
    "cartoon": cartoon,
    "pencil": pencil,
    "posterise": posterise,
    "painterly": kuwahara,
}


@dataclass(frozen=True)
class Options:
    strength: float = 1.0
    preserve_colour: bool = False
    size: int | None = None  # short side the style runs at (None: the frames' own)


class Styler:
    """One style with its options; call it on batches of frames."""

    def __init__(self, run: Frames, options: Options = Options()) -> None:
        self.run, self.options = run, options

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        styled = self._at_working_size(frames)
        if self.options.preserve_colour:
            styled = with_luma(frames, luma(styled))
        if self.options.strength < 1.0:
            styled = torch.lerp(frames, styled, self.options.strength)
        return styled.clamp(0.0, 1.0)

    def _at_working_size(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        size = self.options.size
        if size is None or size >= min(height, width):
            return self.run(frames)
        scale = size / min(height, width)
        small = F.interpolate(
            frames, size=(max(1, round(height * scale)), max(1, round(width * scale))), mode="area"
        )
        return F.interpolate(self.run(small), size=(height, width), mode="bilinear", align_corners=False)


def with_luma(rgb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`rgb` with its luma replaced by `y` and its chroma kept (BT.601 YCbCr: RGB = Y + a
    chroma-only offset, so adding the luma difference to every channel keeps Cb and Cr)."""
    return rgb + (y - luma(rgb))


def multistyle(weights: list[list[float]], device: torch.device, options: Options) -> Styler:
    """A pretrained style by index, or a blend: [[index, weight], ...], weights summing to 1."""
    net = _multistyle(device)
    from models.multistyle import N_STYLES

    mix = torch.zeros(N_STYLES, device=device, dtype=compute_dtype(device))
    for index, weight in weights:
        mix[int(index)] = weight
    return Styler(lambda frames: net(frames, mix), options)


def from_picture(picture: torch.Tensor, device: torch.device, options: Options) -> Styler:
    """The style of `picture` (RGB [1, 3, H, W] in 0..1): its style vector is computed once,
    here, and every frame is painted with it."""
    predictor, transform = _arbitrary(device)
    with torch.inference_mode():
        vector = predictor(picture.to(device, compute_dtype(device)))
    return Styler(lambda frames: transform(frames, vector), options)


def from_checkpoint(path: Path, device: torch.device, options: Options, name: str | None = None) -> Styler:
    """A TransformerNet state dict; loaded for each call (the file may be any job's). `name`:
    the file as errors show it (default its path)."""
    net = TransformerNet.load(path, name).to(device, compute_dtype(device)).eval()
    return Styler(net, options)


def builtin(name: str, options: Options) -> Styler:
    return Styler(BUILTIN[name], options)


@cache
def _multistyle(device: torch.device) -> MultiStyle:
    from models.multistyle import MultiStyle

    return MultiStyle.load(model_path("multistyle26.onnx")).to(device, compute_dtype(device)).eval()


@cache
def _arbitrary(device: torch.device) -> tuple[StylePredictor, ArbitraryStyle]:
    from models.arbitrary import ArbitraryStyle, StylePredictor

    dtype = compute_dtype(device)
    predictor = StylePredictor.load(model_path("arbitrary_predict.onnx")).to(device, dtype).eval()
    transform = ArbitraryStyle.load(model_path("arbitrary_transform.onnx")).to(device, dtype).eval()
    return predictor, transform
