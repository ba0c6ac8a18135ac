"""The 26-style transfer network as a torch module: one small feed-forward net, 26 styles and
any blend of them, chosen per frame by a weight vector.

V. Dumoulin, J. Shlens, M. Kudlur, "A Learned Representation for Artistic Style", ICLR 2017:
every style shares the convolutions and differs only in the scale (gamma) and shift (beta)
of each instance normalisation ("conditional instance normalisation"); a blend of styles is
a weighted sum of their gammas and betas. The weights are the TensorFlow Android stylize
demo's (Apache-2.0), read from an ONNX export (`multistyle26.onnx`) with the `onnx` package;
this module implements the network by hand and does not interpret the graph.

The network, as the file has it (every convolution without bias, reflection-padded by
kernel // 2; every normalisation is over each channel's H x W with epsilon 1e-5 and the
biased variance, followed by ReLU except where noted):

    contract: 9x9 3->32, 3x3 stride 2 32->32, 3x3 stride 2 32->32
    6 residual blocks: x + norm(conv(relu(norm(conv(x))))), 3x3 32->32, no ReLU after the sum
    expand: nearest 2x, 3x3 32->8; nearest 2x, 3x3 8->4; 9x9 4->3, norm, sigmoid

Input RGB in 0..1, output RGB in 0..1 (the sigmoid). The two stride-2 steps and the two
2x upsamplings make the file's output the input size rounded up to a multiple of 4; this
module reflects the bottom and right edges out to that multiple and crops the result, so the
output always has the input's size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

N_STYLES = 26
EPS = 1e-5  # the file's epsilon (float32 nearest to 1e-5)
MIN_SIDE = 32  # smaller frames leave 8 x 8 or fewer pixels per channel at the bottleneck
MULTIPLE = 4  # two stride-2 convolutions, undone by two 2x upsamplings


class Layer(NamedTuple):
    name: str  # prefix of the file's initializers
    c_in: int
    c_out: int
    kernel: int
    stride: int


CONTRACT = (
    Layer("contract.0", 3, 32, 9, 1),
    Layer("contract.1", 32, 32, 3, 2),
    Layer("contract.2", 32, 32, 3, 2),
)
RESIDUAL = tuple(Layer(f"res.{i}.{j}", 32, 32, 3, 1) for i in range(6) for j in range(2))
EXPAND = (Layer("expand.0", 32, 8, 3, 1), Layer("expand.1", 8, 4, 3, 1), Layer("expand.2", 4, 3, 9, 1))
LAYERS = CONTRACT + RESIDUAL + EXPAND
# Operators the export uses; a graph with others is some other network.
KNOWN_OPS = {
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Mul", "Pad", "Pow",
    "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "Sqrt", "Sub",
    "Transpose", "Unsqueeze",
}  # fmt: skip


class MultiStyle(torch.nn.Module):
    """forward(frames RGB [B, 3, H, W] in 0..1, weights [26] or [B, 26]) -> RGB [B, 3, H, W].

    A one-hot weight row is one style. The network was trained on one-hot rows only; convex
    blends (non-negative, summing to 1) interpolate between styles, as in the paper. Rows are
    used as given, not normalised: other sums scale every gamma and beta and leave the styles'
    range."""

    gamma: torch.Tensor  # [26, sum of channels], float32
    beta: torch.Tensor

    def __init__(
        self, convs: list[torch.Tensor], gammas: list[torch.Tensor], betas: list[torch.Tensor]
    ) -> None:
        super().__init__()
        for layer, w in zip(LAYERS, convs, strict=True):
            self.register_buffer(_key(layer), w)
        # All layers' gammas and betas side by side, [26, sum of channels]: one matrix
        # product per call gives every layer's blend. Kept float32 whatever the module's dtype
        # (see _norm).
        self.register_buffer("gamma", torch.cat(gammas, dim=1))
        self.register_buffer("beta", torch.cat(betas, dim=1))
        ends = list(itertools.accumulate(layer.c_out for layer in LAYERS))
        self.slices = [slice(end - layer.c_out, end) for layer, end in zip(LAYERS, ends, strict=True)]

    @classmethod
    def load(cls, path: Path) -> MultiStyle:
        """Reads the weights from the ONNX file; ValueError naming the file if it is not this
        network (missing or misshapen weights, other operators, other inputs)."""
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf raises its own DecodeError, and OSError for I/O
            raise ValueError(f"{path}: not an ONNX model ({exc})") from exc
        graph = model.graph
        inputs = {i.name for i in graph.input}
        if inputs != {"image", "style_weights"}:
            raise ValueError(f"{path}: inputs {sorted(inputs)}, expected ['image', 'style_weights']")
        others = {n.op_type for n in graph.node} - KNOWN_OPS
        if others:
            raise ValueError(f"{path}: operators {sorted(others)} are not in the 26-style network")
        for node in graph.node:
            _check_node(path, node)
        found = {t.name: t for t in graph.initializer}

        def weight(name: str, shape: tuple[int, ...]) -> torch.Tensor:
            if name not in found:
                raise ValueError(f"{path}: no weight {name!r}; not the 26-style network")
            value = numpy_helper.to_array(found[name])
            if value.shape != shape or value.dtype != np.float32:
                raise ValueError(
                    f"{path}: {name} is {value.dtype} {list(value.shape)}, expected float32 {list(shape)}"
                )
            return torch.from_numpy(value.copy())

        convs, gammas, betas = [], [], []
        for layer in LAYERS:
            convs.append(weight(f"{layer.name}.w", (layer.c_out, layer.c_in, layer.kernel, layer.kernel)))
            gammas.append(weight(f"{layer.name}.norm.gamma", (N_STYLES, layer.c_out)))
            betas.append(weight(f"{layer.name}.norm.beta", (N_STYLES, layer.c_out)))
        return cls(convs, gammas, betas)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MultiStyle:
        # .to(dtype) and .half() convert the convolution weights only: the gammas and betas
        # stay float32 (from the originals, not a round trip through float16), on whatever
        # device the weights went to.
        gamma, beta = self.gamma, self.beta
        super()._apply(fn, recurse)
        self.gamma = gamma.to(self.gamma.device, torch.float32)
        self.beta = beta.to(self.beta.device, torch.float32)
        return self

    def forward(self, frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be RGB [B, 3, H, W], got {list(frames.shape)}")
        batch, _, height, width = frames.shape
        if min(height, width) < MIN_SIDE:
            raise ValueError(f"frames must be at least {MIN_SIDE} x {MIN_SIDE}, got {height} x {width}")
        rows = self._rows(weights, batch, frames.device)
        gamma, beta = rows @ self.gamma, rows @ self.beta  # [B, sum of channels], float32

        x = frames.to(self.conv_dtype)
        # Reflect out to a multiple of 4 at the bottom and right, where the file's own padding
        # would have been zeros' worth of extra output; the crop at the end removes it.
        extra_h, extra_w = -height % MULTIPLE, -width % MULTIPLE
        if extra_h or extra_w:
            x = F.pad(x, (0, extra_w, 0, extra_h), mode="reflect")

        def step(x: torch.Tensor, index: int, relu: bool) -> torch.Tensor:
            layer = LAYERS[index]
            p = layer.kernel // 2
            x = F.conv2d(
                F.pad(x, (p, p, p, p), mode="reflect"), getattr(self, _key(layer)), stride=layer.stride
            )
            x = _norm(x, gamma[:, self.slices[index]], beta[:, self.slices[index]])
            return x.relu_() if relu else x

        for i in range(len(CONTRACT)):
            x = step(x, i, relu=True)
        first = len(CONTRACT)
        for i in range(first, first + len(RESIDUAL), 2):
            x = x + step(step(x, i, relu=True), i + 1, relu=False)
        last = first + len(RESIDUAL)
        x = step(F.interpolate(x, scale_factor=2.0, mode="nearest"), last, relu=True)
        x = step(F.interpolate(x, scale_factor=2.0, mode="nearest"), last + 1, relu=True)
        x = torch.sigmoid(step(x, last + 2, relu=False))
        return x[:, :, :height, :width]

    @property
    def conv_dtype(self) -> torch.dtype:
        return getattr(self, _key(LAYERS[0])).dtype

    def _rows(self, weights: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
        """The style weights as float32 [B, 26] on `device`."""
        if weights.dim() == 1:
            weights = weights[None]
        if weights.dim() != 2 or weights.shape[1] != N_STYLES or weights.shape[0] not in (1, batch):
            raise ValueError(
                f"weights must be [{N_STYLES}] or [{batch}, {N_STYLES}], got {list(weights.shape)}"
            )
        return weights.to(device, torch.float32).expand(batch, N_STYLES)


def _key(layer: Layer) -> str:
    return "w_" + layer.name.replace(".", "_")


def _norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Conditional instance norm of x [B, C, H, W] with per-frame gamma, beta [B, C] (float32).

    Instance norm of frames is batch norm of one sample with B * C channels, which is one
    fused kernel (statistics, then the scaled and shifted output). The gammas and betas are
    float32 even where x is float16: the kernels then keep the statistics in float32, which
    matters at frame sizes: a channel of a 1080p frame is 2 million values, beyond what a
    float16 sum holds (65504), and the variance of values far from zero loses every digit to
    cancellation at float16's 11-bit precision."""
    b, c, h, w = x.shape
    y = F.batch_norm(
        x.reshape(1, b * c, h, w), None, None, gamma.reshape(-1), beta.reshape(-1), True, 0.0, EPS
    )
    return y.reshape(b, c, h, w)


def _check_node(path: Path, node: onnx.NodeProto) -> None:
    """The few attributes that change the arithmetic: reflection padding, nearest upsampling
    with the asymmetric, floor convention (F.interpolate's 'nearest'), plain convolutions."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Pad" and attrs.get("mode") != b"reflect":
        raise ValueError(f"{path}: Pad {node.name!r} is {attrs.get('mode')!r}, expected reflect")
    if node.op_type == "Resize":
        expected = {
            "mode": b"nearest",
            "coordinate_transformation_mode": b"asymmetric",
            "nearest_mode": b"floor",
        }
        for key, value in expected.items():
            if attrs.get(key) != value:
                raise ValueError(
                    f"{path}: Resize {node.name!r} has {key}={attrs.get(key)!r}, expected {value!r}"
                )
    if node.op_type == "Conv" and (attrs.get("group", 1) != 1 or set(attrs.get("dilations", [1])) != {1}):
        raise ValueError(f"{path}: Conv {node.name!r} is grouped or dilated")
