"""Run a TFLite flatbuffer as a torch module: weights become tensors, operators torch calls.

Only the float operators that the person models use are supported; anything else fails at
load time with the operator's name. Activations are indexed NCHW (torch's axes); TFLite's
NHWC axes are translated where an operator names one. In memory, activations and filters are
channels-last, as the file stores them: oneDNN's convolutions then read and write them as they
are, where NCHW ones are reordered at every call (the pose-landmark network at batch 8 runs in
~36 ms a crop against ~44 on 2 CPU cores), and cuDNN prefers the layout too. The batch
size is free even though the files declare 1. Constant subgraphs (fp16 weights behind
DEQUANTIZE, sparse weights behind DENSIFY) are folded once at load time.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from tflite.ActivationFunctionType import ActivationFunctionType as Act
from tflite.BuiltinOperator import BuiltinOperator as Op
from tflite.DimensionType import DimensionType
from tflite.Padding import Padding
from tflite.SparseIndexVector import SparseIndexVector
from tflite.TensorType import TensorType

OP_NAMES = {v: k for k, v in vars(Op).items() if not k.startswith("_")}
NUMPY_TYPES = {
    TensorType.FLOAT32: np.float32,
    TensorType.FLOAT16: np.float16,
    TensorType.INT32: np.int32,
    TensorType.INT64: np.int64,
    TensorType.INT8: np.int8,
    TensorType.UINT8: np.uint8,
}
TORCH_AXIS = (0, 2, 3, 1)  # a 4-D tensor's TFLite (NHWC) axis i is torch (NCHW) axis TORCH_AXIS[i]
CUSTOM_TRANSPOSE_CONV = "Convolution2DTransposeBias"  # MediaPipe's own operator
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


class UnsupportedModelError(ValueError):
    """The file uses an operator or tensor type this loader does not implement."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # as the file declares it (NHWC for 4-D)
    dtype: type


Kernel = Callable[[list[torch.Tensor]], torch.Tensor]


class TFLiteModule(torch.nn.Module):
    """forward(x [B, C, H, W] float) -> tuple of outputs (4-D ones NCHW, others as declared)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        buf = Path(path).read_bytes()
        model = tflite.Model.GetRootAsModel(buf, 0)
        graph = model.Subgraphs(0)
        self.path = Path(path)
        self.tensors = [_tensor_info(graph.Tensors(i)) for i in range(graph.TensorsLength())]
        self.inputs = [int(i) for i in graph.InputsAsNumpy()]
        self.outputs = [int(i) for i in graph.OutputsAsNumpy()]
        consts: dict[int, np.ndarray] = {}
        for i in range(graph.TensorsLength()):
            value = _constant(model, graph.Tensors(i))
            if value is not None:
                consts[i] = value
        ops = [graph.Operators(k) for k in range(graph.OperatorsLength())]
        names = [_op_name(model, op) for op in ops]
        folded = _pads_into_convs(ops, names, consts, set(self.outputs))
        self.steps: list[tuple[str, Kernel, list[int], list[int]]] = []
        for op, name in zip(ops, names, strict=True):
            ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(i) for i in op.OutputsAsNumpy()]
            if name in ("DEQUANTIZE", "DENSIFY") and all(i in consts for i in ins):
                source = self.tensors[ins[0]] if name == "DEQUANTIZE" else None
                consts[outs[0]] = _fold(name, graph.Tensors(ins[0]), consts[ins[0]], source)
                continue
            if outs[0] in folded:
                continue
            before = folded.get(ins[0]) if name in CONVS else None
            kernel = _kernel(name, op, model, self.tensors, ins, outs, consts, before and before[1])
            if before:  # the conv reads the unpadded tensor and pads it itself
                ins = [before[0], *ins[1:]]
            self.steps.append((name, kernel, [i for i in ins if i >= 0], outs))
        # Constants in torch layout (conv filters already rearranged by their kernels).
        self._consts = sorted(consts)
        for i in self._consts:
            buffer = _to_torch_layout(consts[i])
            if buffer.dim() == 4:
                buffer = buffer.contiguous(memory_format=torch.channels_last)
            self.register_buffer(f"c{i}", buffer, persistent=False)
        # The activations each step is the last reader of, dropped after it: held to the end,
        # a batch's intermediates would fill memory and no buffer would be reused while warm.
        last: dict[int, int] = {}
        for k, (*_, ins, _) in enumerate(self.steps):
            for i in ins:
                last[i] = k
        keep = set(self._consts) | set(self.outputs)
        self._frees: list[list[int]] = [[] for _ in self.steps]
        for i, k in last.items():
            if i not in keep:
                self._frees[k].append(i)

    def operators(self) -> list[str]:
        return [name for name, *_ in self.steps]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values: dict[int, torch.Tensor] = {i: getattr(self, f"c{i}") for i in self._consts}
        for index, x in zip(self.inputs, inputs, strict=True):
            values[index] = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        for (_name, kernel, ins, outs), frees in zip(self.steps, self._frees, strict=True):
            values[outs[0]] = kernel([values[i] for i in ins])
            for i in frees:
                del values[i]
        return tuple(values[i] for i in self.outputs)


def _pads_into_convs(
    ops: list[tflite.Operator], names: list[str], consts: dict[int, np.ndarray], outputs: set[int]
) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
    """The PAD operators whose padded tensor only convolutions read, and only spatially:
    {padded tensor: (unpadded tensor, (left, right, top, bottom))}. Those convolutions pad as
    they read (zero padding is what a conv's own padding does), so the padded copy, written and
    read once more at the network's largest sizes, is never made."""
    readers: dict[int, list[str]] = {}
    for op, name in zip(ops, names, strict=True):
        for i in op.InputsAsNumpy() if op.InputsLength() else []:
            readers.setdefault(int(i), []).append(name)
    folded = {}
    for op, name in zip(ops, names, strict=True):
        if name != "PAD" or int(op.InputsAsNumpy()[1]) not in consts:
            continue
        source, padded = int(op.InputsAsNumpy()[0]), int(op.OutputsAsNumpy()[0])
        paddings = consts[int(op.InputsAsNumpy()[1])].astype(int)  # NHWC: [4, 2]
        if paddings.shape != (4, 2) or paddings[0].any() or paddings[3].any() or padded in outputs:
            continue
        if all(reader in CONVS for reader in readers.get(padded, [])):
            (top, bottom), (left, right) = paddings[1], paddings[2]
            folded[padded] = (source, (int(left), int(right), int(top), int(bottom)))
    return folded


def _op_name(model: tflite.Model, op: tflite.Operator) -> str:
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == Op.CUSTOM:
        return code.CustomCode().decode()
    return OP_NAMES.get(builtin, str(builtin))


def _tensor_info(t: tflite.Tensor) -> TensorInfo:
    if t.Type() not in NUMPY_TYPES:
        raise UnsupportedModelError(f"tensor {t.Name().decode()!r} has unsupported type {t.Type()}")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    return TensorInfo(t.Name().decode(), shape, NUMPY_TYPES[t.Type()])


def _constant(model: tflite.Model, t: tflite.Tensor) -> np.ndarray | None:
    data = model.Buffers(t.Buffer()).DataAsNumpy()
    if isinstance(data, int) or data.size == 0:  # the flatbuffer gives 0 for an absent vector
        return None
    values = np.frombuffer(data.tobytes(), dtype=NUMPY_TYPES[t.Type()])
    if t.Sparsity() is not None:
        return values  # dense only after DENSIFY
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    return values.reshape(shape)


def _fold(name: str, t: tflite.Tensor, value: np.ndarray, source: TensorInfo | None) -> np.ndarray:
    if name == "DENSIFY":
        return _densify(t, value)
    quant = t.Quantization()
    if value.dtype in (np.int8, np.uint8) and quant is not None and quant.ScaleLength():
        scale = quant.ScaleAsNumpy().astype(np.float32)
        zero = quant.ZeroPointAsNumpy().astype(np.float32)
        axis = quant.QuantizedDimension()
        shape = [1] * value.ndim
        if scale.size > 1:
            shape[axis] = scale.size
        return ((value.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
    return value.astype(np.float32)


def _densify(t: tflite.Tensor, values: np.ndarray) -> np.ndarray:
    """Expand a TFLite sparse tensor (CSR levels in a traversal order, optional blocks)."""
    sparsity = t.Sparsity()
    shape = [int(d) for d in t.ShapeAsNumpy()]
    order = [int(d) for d in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(d) for d in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    rank = len(shape)
    positions = np.zeros(1, np.int64)
    coords: list[np.ndarray] = []
    for level in range(len(order)):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == DimensionType.DENSE:
            n, m = meta.DenseSize(), len(positions)
            positions = (positions[:, None] * n + np.arange(n)).reshape(-1)
            coords = [np.repeat(c, n) for c in coords] + [np.tile(np.arange(n), m)]
        else:
            segments = _index_vector(meta.ArraySegmentsType(), meta.ArraySegments())
            indices = _index_vector(meta.ArrayIndicesType(), meta.ArrayIndices())
            starts, ends = segments[positions], segments[positions + 1]
            counts = ends - starts
            positions = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
            coords = [np.repeat(c, counts) for c in coords] + [indices[positions]]
    block_sizes = {block_map[k]: sparsity.DimMetadata(rank + k).DenseSize() for k in range(len(block_map))}
    index = [np.zeros_like(positions) for _ in range(rank)]
    for level, dim in enumerate(order):
        if dim < rank:  # the outer (block) coordinate of an original dimension
            index[dim] = index[dim] + coords[level] * block_sizes.get(dim, 1)
        else:  # a coordinate inside a block
            index[block_map[dim - rank]] = index[block_map[dim - rank]] + coords[level]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(index)] = values[positions]  # a leaf's position is its value's index
    return dense


def _index_vector(kind: int, table: object) -> np.ndarray:
    vectors = {
        SparseIndexVector.Int32Vector: tflite.Int32Vector,
        SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
        SparseIndexVector.Uint8Vector: tflite.Uint8Vector,
    }
    vector = vectors[kind]()
    vector.Init(table.Bytes, table.Pos)  # type: ignore[attr-defined]
    return vector.ValuesAsNumpy().astype(np.int64)


def _to_torch_layout(value: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(value, dtype=np.float32 if value.dtype == np.float16 else value.dtype))


# --- kernels ------------------------------------------------------------------------------


def _options(op: tflite.Operator, cls: type) -> object:
    table = op.BuiltinOptions()
    options = cls()
    if table is not None:
        options.Init(table.Bytes, table.Pos)
    return options


def _activation(code: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """An operator's fused activation, applied in place: it only ever sees the operator's own
    fresh output. In place, the pose-landmark network runs ~25 % faster on the CPU (a new
    tensor per activation, 200 of them a frame, costs more than the clamp itself)."""
    if code == Act.NONE:
        return lambda x: x
    if code == Act.RELU:
        return torch.relu_
    if code == Act.RELU6:
        return lambda x: x.clamp_(0.0, 6.0)
    if code == Act.RELU_N1_TO_1:
        return lambda x: x.clamp_(-1.0, 1.0)
    if code == Act.TANH:
        return torch.tanh_
    raise UnsupportedModelError(f"fused activation {code} is not supported")


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding: the extra pixel, if any, goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_pads(
    padding: int,
    hw: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int] = (1, 1),
) -> tuple[int, int, int, int]:
    if padding == Padding.VALID:
        return 0, 0, 0, 0
    top, bottom = _same_pads(hw[0], kernel[0], stride[0], dilation[0])
    left, right = _same_pads(hw[1], kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, pads: tuple[int, int, int, int],
          stride: tuple[int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:  # fmt: skip
    left, right, top, bottom = pads
    if left == right and top == bottom:
        return F.conv2d(x, w, b, stride, (top, left), dilation, groups)
    return F.conv2d(F.pad(x, pads), w, b, stride, 0, dilation, groups)


# oneDNN's convolution with its activation applied as it writes (the operator torch's own
# compiler emits for CPU convolutions): one pass over the output and one OpenMP region a layer
# fewer. With OpenMP threads that sleep between regions, each region costs its wake-up (~0.3 ms
# on 2 cores), and the pose-landmark network has ~160 activations a crop: fused, the network
# alone runs at ~44 against ~50 ms a crop at batch 8 (alternating runs), to the bit the same;
# in the whole matter the gain is within this machine's noise. Where torch lacks the
# operator, the activation runs after the convolution as on other devices.
ONEDNN_ACTIVATIONS: dict[int, tuple[str, list[float]]] = {
    Act.NONE: ("none", []),
    Act.RELU: ("relu", []),
    Act.RELU6: ("hardtanh", [0.0, 6.0]),
    Act.RELU_N1_TO_1: ("hardtanh", [-1.0, 1.0]),
    Act.TANH: ("tanh", []),
}
try:
    _CONV_POINTWISE: Callable[..., torch.Tensor] | None = torch.ops.mkldnn._convolution_pointwise
except (AttributeError, RuntimeError):
    _CONV_POINTWISE = None


def _onednn(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def _conv_fused(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, pads: tuple[int, int, int, int],
                stride: tuple[int, int], dilation: tuple[int, int], groups: int,
                activation: tuple[str, list[float]]) -> torch.Tensor:  # fmt: skip
    assert _CONV_POINTWISE is not None
    left, right, top, bottom = pads
    padding = [top, left]
    if left != right or top != bottom:
        x, padding = F.pad(x, pads), [0, 0]
    name, scalars = activation
    return _CONV_POINTWISE(x, w, b, padding, list(stride), list(dilation), groups, name, scalars, "")


def _nchw_axis(axis: int, rank: int) -> int:
    axis = axis % rank
    return TORCH_AXIS[axis] if rank == 4 else axis


def _nchw_const(value: np.ndarray) -> np.ndarray:
    return value.transpose(0, 3, 1, 2) if value.ndim == 4 else value


def _kernel(
    name: str,
    op: tflite.Operator,
    model: tflite.Model,
    tensors: list[TensorInfo],
    ins: list[int],
    outs: list[int],
    consts: dict[int, np.ndarray],
    before: tuple[int, int, int, int] | None = None,
) -> Kernel:
    """The kernel of one operator. `before`: zero padding (left, right, top, bottom) a conv
    adds to its input first, standing in for a PAD operator before it (`_pads_into_convs`)."""
    shape_in = tensors[ins[0]].shape if ins else ()
    shape_out = tensors[outs[0]].shape

    if name in CONVS:
        depthwise = name == "DEPTHWISE_CONV_2D"
        o = _options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        w = consts[ins[1]]  # OHWI for CONV_2D, 1HW(C*M) for DEPTHWISE
        stride = (o.StrideH(), o.StrideW())  # type: ignore[attr-defined]
        dilation = (o.DilationHFactor(), o.DilationWFactor())  # type: ignore[attr-defined]
        groups = shape_in[3] if depthwise else 1
        consts[ins[1]] = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)
        pads = _spatial_pads(o.Padding(), shape_in[1:3], w.shape[1:3], stride, dilation)  # type: ignore[attr-defined]
        if before:
            pads = tuple(a + b for a, b in zip(pads, before, strict=True))  # type: ignore[assignment]
        code = o.FusedActivationFunction()  # type: ignore[attr-defined]
        act, fused = _activation(code), ONEDNN_ACTIVATIONS.get(code)
        has_bias = len(ins) > 2 and ins[2] >= 0

        def conv(v: list[torch.Tensor]) -> torch.Tensor:
            x, b = v[0], v[2] if has_bias else None
            if fused is not None and _CONV_POINTWISE is not None and _onednn(x):
                return _conv_fused(x, v[1], b, pads, stride, dilation, groups, fused)
            return act(_conv(x, v[1], b, pads, stride, dilation, groups))

        return conv

    if name == CUSTOM_TRANSPOSE_CONV:
        # Its options are a raw C struct: padding enum, stride width, stride height.
        raw = bytes(op.CustomOptionsAsNumpy().tobytes())
        _padding, stride_w, stride_h = struct.unpack("<iii", raw[:12])
        w = consts[ins[1]]  # OHWI
        consts[ins[1]] = w.transpose(3, 0, 1, 2)  # torch's conv_transpose wants [in, out, kh, kw]
        out_hw = shape_out[1:3]
        full = [(shape_in[1 + i] - 1) * s + w.shape[1 + i] for i, s in enumerate((stride_h, stride_w))]
        crop = [(full[i] - out_hw[i]) // 2 for i in range(2)]

        def transpose_conv(v: list[torch.Tensor]) -> torch.Tensor:
            y = F.conv_transpose2d(v[0], v[1], v[2], (stride_h, stride_w))
            return y[:, :, crop[0] : crop[0] + out_hw[0], crop[1] : crop[1] + out_hw[1]]

        return transpose_conv

    if name in ("ADD", "MUL"):
        o = _options(op, tflite.AddOptions if name == "ADD" else tflite.MulOptions)
        act = _activation(o.FusedActivationFunction())  # type: ignore[attr-defined]
        for i in ins:
            if i in consts:
                consts[i] = _broadcastable(consts[i], len(shape_out))
        fn = torch.add if name == "ADD" else torch.mul
        return lambda v: act(fn(v[0], v[1]))

    if name == "RELU":
        return lambda v: F.relu(v[0])
    if name == "RELU6":
        return lambda v: F.relu6(v[0])
    if name == "HARD_SWISH":
        return lambda v: F.hardswish(v[0])
    if name == "LOGISTIC":
        return lambda v: torch.sigmoid(v[0])

    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = _options(op, tflite.Pool2DOptions)
        k = (o.FilterHeight(), o.FilterWidth())  # type: ignore[attr-defined]
        stride = (o.StrideH(), o.StrideW())  # type: ignore[attr-defined]
        pads = _spatial_pads(o.Padding(), shape_in[1:3], k, stride)  # type: ignore[attr-defined]
        act = _activation(o.FusedActivationFunction())  # type: ignore[attr-defined]
        if name == "MAX_POOL_2D":
            return lambda v: act(F.max_pool2d(F.pad(v[0], pads, value=float("-inf")), k, stride))

        # TFLite averages over the real pixels only: divide by a count that excludes padding.
        def avg_pool(v: list[torch.Tensor]) -> torch.Tensor:
            x = v[0]
            if not any(pads):
                return act(F.avg_pool2d(x, k, stride))
            total = F.avg_pool2d(F.pad(x, pads), k, stride, divisor_override=1)
            ones = F.pad(torch.ones_like(x[:1, :1]), pads)
            return act(total / F.avg_pool2d(ones, k, stride, divisor_override=1))

        return avg_pool

    if name == "MEAN":
        axes = tuple(_nchw_axis(int(a), len(shape_in)) for a in np.atleast_1d(consts[ins[1]]))
        keep = bool(_options(op, tflite.ReducerOptions).KeepDims())  # type: ignore[attr-defined]
        if not keep and len(shape_in) == 4:
            raise UnsupportedModelError("MEAN over a 4-D tensor without keep_dims is not supported")
        return lambda v: v[0].mean(dim=axes, keepdim=keep)

    if name == "PAD":
        paddings = consts[ins[1]].astype(int)  # [rank, 2] in TFLite axis order
        order = [TORCH_AXIS.index(a) for a in range(4)] if len(shape_in) == 4 else list(range(len(shape_in)))
        flat: list[int] = []
        for axis in reversed(range(len(shape_in))):  # F.pad lists the last torch axis first
            flat += [int(paddings[order[axis]][0]), int(paddings[order[axis]][1])]
        return lambda v: F.pad(v[0], flat)

    if name == "RESHAPE":
        target = list(shape_out)

        def reshape(v: list[torch.Tensor]) -> torch.Tensor:
            x = v[0]
            if x.dim() == 4:
                x = x.permute(0, 2, 3, 1)  # back to NHWC, whose element order the file assumes
            y = x.reshape([x.shape[0], *target[1:]])
            return y.permute(0, 3, 1, 2).contiguous() if y.dim() == 4 else y

        return reshape

    if name == "CONCATENATION":
        o = _options(op, tflite.ConcatenationOptions)
        axis = _nchw_axis(o.Axis(), len(shape_out))  # type: ignore[attr-defined]
        act = _activation(o.FusedActivationFunction())  # type: ignore[attr-defined]
        return lambda v: act(torch.cat(v, dim=axis))

    if name == "RESIZE_BILINEAR":
        o = _options(op, tflite.ResizeBilinearOptions)
        size = [int(s) for s in consts[ins[1]]]
        align, half = bool(o.AlignCorners()), bool(o.HalfPixelCenters())  # type: ignore[attr-defined]
        return lambda v: _resize_bilinear(v[0], size, align, half)

    if name == "DEPTH_TO_SPACE":
        bs = _options(op, tflite.DepthToSpaceOptions).BlockSize()  # type: ignore[attr-defined]

        def depth_to_space(v: list[torch.Tensor]) -> torch.Tensor:
            n, c, h, w = v[0].shape
            # TFLite (NHWC) reads channel (i * bs + j) * C_out + c for output pixel offset (i, j).
            y = v[0].reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
            return y.reshape(n, c // (bs * bs), h * bs, w * bs)

        return depth_to_space

    if name == "DEQUANTIZE":
        return lambda v: v[0].float()

    raise UnsupportedModelError(f"operator {name} is not supported by frameq's TFLite loader")


def _broadcastable(value: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand shaped to broadcast against NCHW activations."""
    if rank != 4:
        return value
    if value.ndim == 4:
        return _nchw_const(value)
    if value.ndim == 1 and value.size > 1:  # per channel
        return value.reshape(1, -1, 1, 1)
    return value


def _resize_bilinear(x: torch.Tensor, size: Sequence[int], align: bool, half: bool) -> torch.Tensor:
    if align:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    if half:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    # TensorFlow's legacy mapping: source = destination * scale, no half-pixel shift.
    h, w = x.shape[-2:]
    out = x
    for axis, (n_in, n_out) in ((-2, (h, size[0])), (-1, (w, size[1]))):
        src = torch.arange(n_out, device=x.device, dtype=torch.float32) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (src - lo.float()).to(x.dtype)
        shape = [1] * out.dim()
        shape[axis] = n_out
        frac = frac.reshape(shape)
        out = out.index_select(axis, lo) * (1 - frac) + out.index_select(axis, hi) * frac
    return out
