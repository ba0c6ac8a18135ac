"""Arbitrary style transfer: any picture as the style, applied to video frames.

Magenta's arbitrary image stylisation (Ghiasi, Lee, Kudlur, Dumoulin and Shlens, "Exploring the
structure of a real-time, arbitrary neural artistic stylization network", BMVC 2017; Apache-2.0),
as the int8 TensorFlow Lite pair converted to ONNX, run by models.onnx:

- the style predictor, a MobileNetV2 that maps a 256x256 style picture to a 100-number style
  vector (the paper's "style embedding");
- the style transform, a small convolutional network whose instance normalisations take their
  scale and shift from that vector (conditional instance normalisation), so one network paints
  in any style.

The files keep their int8 quantisation: each quantise/dequantise pair is emulated in floating
point (see models.onnx). Both networks take NHWC input in 0..1 (their first quantiser maps
0..1 onto int8 with scale 1/255) and the transform ends in a sigmoid, so its output is 0..1
(in steps of 1/256: the file quantises the sigmoid too).
The transform is fully convolutional: the file declares 384x384 but nothing in the graph
depends on it (onnxruntime too runs it at any size once the declared input shape is freed).
Its two stride-2 stages and two 2x nearest upsamplings give an output of 4 * ceil(size / 4)
per side, so frames are reflected out to a multiple of 4 and the result cropped back.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from models.onnx import OnnxModule
from models.weights import model_path

STYLE_SIZE = 256  # the predictor's input
STYLE_DIM = 100  # length of a style vector
MULTIPLE = 4  # the transform's sides: two stride-2 stages, then two 2x upsamplings
PREDICT_FILE = "arbitrary_predict.onnx"
TRANSFORM_FILE = "arbitrary_transform.onnx"


def style_square(style: torch.Tensor, size: int = STYLE_SIZE) -> torch.Tensor:
    """RGB [B, 3, H, W] -> [B, 3, size, size]: the short side scaled to `size`, then the centre
    cropped, as the TensorFlow Lite stylisation example prepares its style image (no squashing,
    so brush strokes keep their shape). Antialiased when shrinking: a large style picture
    shrunk without it aliases into patterns that are not in the picture."""
    h, w = style.shape[-2:]
    scale = size / min(h, w)
    out_h, out_w = max(size, math.floor(h * scale)), max(size, math.floor(w * scale))
    if (out_h, out_w) != (h, w):
        style = _resize(style, (out_h, out_w), antialias=scale < 1)
    top, left = (out_h - size) // 2, (out_w - size) // 2
    return style[:, :, top : top + size, left : left + size]


class StylePredictor(torch.nn.Module):
    """forward(style RGB [B, 3, H, W] in 0..1, any size) -> style vectors [B, 100]."""

    def __init__(self, network: OnnxModule) -> None:
        super().__init__()
        self.network = network

    @classmethod
    def load(cls, path: str | Path | None = None, *, fake_quant: bool = True) -> StylePredictor:
        """The predictor network from `path` (default: the pulled model file)."""
        return cls(OnnxModule.load(path or model_path(PREDICT_FILE), fake_quant=fake_quant))

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        square = style_square(style)
        (vector,) = self.network(square.permute(0, 2, 3, 1))  # NHWC in, [B, 1, 1, 100] out
        return vector.reshape(style.shape[0], STYLE_DIM)


class ArbitraryStyle(torch.nn.Module):
    """forward(frames RGB [B, 3, H, W] in 0..1, style vector [100] or [B, 100]) -> stylised RGB
    [B, 3, H, W] in 0..1.

    Runs at the frames' own size by default: the strokes are then a fixed number of pixels, so
    they look finer on larger frames. `work_height` runs the network at that height instead
    (width in proportion) and scales the result back: the look of a smaller picture, and much
    less work on large frames.
    """

    def __init__(self, network: OnnxModule, work_height: int | None = None) -> None:
        super().__init__()
        self.network = network
        self.work_height = work_height

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, work_height: int | None = None, fake_quant: bool = True
    ) -> ArbitraryStyle:
        """The transform network from `path` (default: the pulled model file)."""
        return cls(OnnxModule.load(path or model_path(TRANSFORM_FILE), fake_quant=fake_quant), work_height)

    def forward(self, frames: torch.Tensor, style_vector: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = frames.shape
        vector = style_vector.to(frames.dtype).reshape(-1, 1, 1, STYLE_DIM)
        if vector.shape[0] not in (1, batch):
            raise ValueError(f"{vector.shape[0]} style vectors for {batch} frames")
        work = frames
        if self.work_height is not None and self.work_height != height:
            size = (self.work_height, max(MULTIPLE, round(width * self.work_height / height)))
            work = _resize(frames, size, antialias=size[0] < height)
        h, w = work.shape[-2:]
        # Reflect out to a multiple of 4 at the bottom and right (as MultiStyle does), so the
        # output covers the frame exactly; the crop below takes the extra back off.
        padded = (
            F.pad(work, (0, -w % MULTIPLE, 0, -h % MULTIPLE), mode="reflect")
            if h % MULTIPLE or w % MULTIPLE
            else work
        )
        (out,) = self.network(padded.permute(0, 2, 3, 1), vector)  # NHWC in and out
        out = out.permute(0, 3, 1, 2)[:, :, :h, :w]
        if work is not frames:
            out = _resize(out, (height, width), antialias=False).clamp_(0.0, 1.0)
        return out.contiguous()


def _resize(x: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bilinear resize; the antialiased kernel has no CPU float16/bfloat16 version, so those
    go through float32 (a small cost next to the networks)."""
    if antialias and x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu":
        return _resize(x.float(), size, antialias).to(x.dtype)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
