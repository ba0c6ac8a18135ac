"""Run an ONNX graph as a torch module: initializers become tensors, nodes torch calls.

The graph is read with the `onnx` package and turned, once at load time, into a list of steps,
each a torch call on the outputs of earlier ones. Everything that depends on constants only
(weights behind DequantizeLinear, shape arithmetic, Constant nodes) is evaluated then, so the
forward pass runs only what depends on the inputs. An operator the table below does not know
fails at load time, naming the operator and the file. ONNX's layout is torch's (NCHW, OIHW
filters), so tensors are kept as the graph has them; a graph that takes NHWC input and
transposes it itself is simply followed.

Quantised (QDQ) graphs: a QuantizeLinear -> DequantizeLinear pair on an activation is emulated
in floating point, x -> (clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale, which is what
the pair computes when executed literally (onnxruntime with graph optimisations off does
exactly this), so each step's numbers follow onnxruntime's. The quantised tensor between the
two ops is carried in that dequantised form (shape-only ops such as Reshape and Transpose
between them commute with it); an operator that needs the integers themselves gets them back
by exact rounding. `fake_quant=False` skips the rounding: the float network the file was
quantised from, approximately, for speed comparisons.

Rewrites that keep the run cheap without changing a number: a Relu or Clip whose only reader
is a QuantizeLinear that clamps at least as tightly is dropped; element-wise steps overwrite
their input when no later step reads it (fresh multi-megabyte buffers cost more on the CPU
than the arithmetic); 2-D convolutions run on channels-last memory (their filters stored so
once), which oneDNN and cuDNN run fastest.

Adding an operator: a builder, registered under the operator's name with `@_register`, that
reads the node's attributes and constant inputs once and returns a `Built` (the kernel, the
values it reads at run time, and optionally an in-place form).

The batch size is free: files often pin batch 1 in constant Reshape targets, and a leading 1
there follows the input's batch whenever that is the only way the element counts agree. Spatial
sizes are free wherever the graph computes them from the input (Pad, Resize by scales, Conv, and
shape arithmetic).

Shape arithmetic: exporters compute sizes in the graph (Shape -> Gather -> Unsqueeze -> Concat
-> Resize's sizes, Reshape's target, Expand's shape). A Shape node's output, and the output of
every node that reads only such values and constants, is a *shape value*: a small integer (or
float) tensor kept on the CPU, whatever device the module is on, whose constants `.to()` leaves
as they are. Shape values depend on the inputs' shapes only, so the steps that make them run once
per set of input shapes; later calls with the same shapes take their results from a cache and
skip them. Consumers read them as Python numbers at run time (no device synchronisation).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

Kernel = Callable[[list[torch.Tensor]], torch.Tensor | tuple[torch.Tensor, ...]]

# Sets of input shapes whose shape values a module keeps (more are rare: a new set clears them).
HOST_CACHE_SIZE = 64
# Operators that only move elements around: a fake-quantised tensor stays one through them.
SHAPE_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
INT_RANGES = {
    torch.int8: (-128, 127),
    torch.uint8: (0, 255),
    torch.int16: (-32768, 32767),
    torch.int32: (-(2**31), 2**31 - 1),
}


class UnsupportedModelError(ValueError):
    """The file uses an operator, attribute value or input kind this loader does not implement."""


@dataclass(frozen=True)
class Node:
    """One graph node as the builders see it; an absent optional input is ""."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]

    def attr(self, key: str, default: Any = None) -> Any:
        value = self.attrs.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    def has(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index] != ""


@dataclass(frozen=True)
class Quant:
    """How an integer tensor maps to real numbers: real = (q - zero_point) * scale."""

    scale: torch.Tensor  # float32, one value or one per slice along `axis`
    zero_point: torch.Tensor  # int64, the shape of scale
    axis: int
    dtype: torch.dtype
    qmin: int
    qmax: int

    @property
    def per_tensor(self) -> bool:
        return self.scale.numel() == 1

    def same(self, other: Quant) -> bool:
        return (
            self.dtype == other.dtype
            and self.scale.shape == other.scale.shape
            and bool(torch.equal(self.scale, other.scale))
            and bool(torch.equal(self.zero_point, other.zero_point))
            and (self.per_tensor or self.axis == other.axis)
        )

    def covers(self, bounds: tuple[float, float]) -> bool:
        """Whether clamping to `bounds` first can change nothing this quantisation yields:
        true when the bounds round to the integer range's ends or beyond."""
        if not self.per_tensor:
            return False
        scale = self.scale.reshape(())
        zero = int(self.zero_point.reshape(()))
        lo, hi = bounds

        def level(bound: float) -> float:  # computed as the kernel computes it, in float32
            return float(torch.round(torch.tensor(bound, dtype=torch.float32) / scale))

        return (lo == -math.inf or level(lo) <= self.qmin - zero) and (
            hi == math.inf or level(hi) >= self.qmax - zero
        )


@dataclass
class Built:
    """What a builder makes of a node."""

    kernel: Kernel
    inputs: list[str]  # the values the kernel reads, in order (constants among them are buffers)
    inplace: Kernel | None = None  # the same, overwriting input 0: used where nothing reads it later
    view: bool = False  # the output may share input 0's storage (a reshape, an identity)
    frozen: bool = False  # the output must never be overwritten in place (a broadcast view)
    bounds: tuple[float, float] | None = None  # the clamp of an activation (Relu, Clip)
    quant: Quant | None = None  # set on a fake-quantising QuantizeLinear


Builder = Callable[[Node, "_Loader"], Built]
OPS: dict[str, Builder] = {}


def _register(*names: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        for name in names:
            OPS[name] = builder
        return builder

    return add


def supported_operators() -> list[str]:
    """The ONNX operator types this loader can build."""
    return sorted(OPS)


@dataclass
class Step:
    """One runtime call: `kernel` on the values named `inputs`, giving those named `outputs`."""

    op: str
    built: Built
    inputs: list[str]
    outputs: list[str]
    kernel: Kernel = field(init=False)  # the built kernel, or its in-place form where that is safe
    drop: list[str] = field(default_factory=list)  # values no later step reads: freed after this one
    host: bool = False  # makes a shape value (see the module's docstring)

    def __post_init__(self) -> None:
        self.kernel = self.built.kernel


class OnnxModule(torch.nn.Module):
    """forward(*inputs) -> tuple of the graph's outputs, in the graph's order and layout.

    Float constants are buffers, so `.to(device, dtype)` moves and converts the whole network;
    integer constants (shapes, indices) stay as they are.
    """

    def __init__(self, model: onnx.ModelProto, path: str = "<memory>", *, fake_quant: bool = True) -> None:
        super().__init__()
        self.path = path
        self.fake_quant = fake_quant
        loader = _Loader(model, path, fake_quant)
        self.input_names = loader.input_names
        self.output_names = [loader.resolve(name) for name in loader.output_names]
        # Values held in dequantised form whose graph tensor is the integers (for comparisons).
        self.quantised = {loader.resolve(name): q for name, q in loader.quant.items()}
        self.steps = loader.steps
        if fake_quant:  # (without the rounding, the clamps are what clamps)
            self.steps = _drop_redundant_clamps(self.steps, self.output_names)
        self._values: dict[str, str] = {}  # graph value -> buffer name, for the constants steps read
        # Constants of shape-value steps: on the CPU, in their own type, whatever .to() is given.
        self._host: dict[str, torch.Tensor] = {}
        needed = {name for step in self.steps for name in step.inputs} | set(self.output_names)
        for name in sorted(needed & loader.constants.keys()):
            if name in loader.host_constants:
                self._host[name] = loader.constants[name]
                continue
            key = f"c{len(self._values)}"
            self.register_buffer(key, loader.constants[name], persistent=False)
            self._values[name] = key
        # The shape values that steps other than shape-value steps (or the caller) read, cached
        # per tuple of input shapes.
        device_reads = {name for step in self.steps if not step.host for name in step.inputs}
        made_on_host = {name for step in self.steps if step.host for name in step.outputs}
        self._host_exports = made_on_host & (device_reads | set(self.output_names))
        self._host_cache: dict[tuple[tuple[int, ...], ...], dict[str, torch.Tensor]] = {}
        _plan(self.steps, [*self.input_names, *self._values, *self._host], self.output_names)

    @classmethod
    def load(cls, path: str | Path, *, fake_quant: bool = True) -> OnnxModule:
        """Read an .onnx file (weights inside it) into a module on the CPU, float32."""
        return cls(onnx.load(str(path)), str(path), fake_quant=fake_quant)

    def operators(self) -> list[str]:
        """The operator of each runtime step, in execution order (folded nodes are absent)."""
        return [step.op for step in self.steps]

    def constants(self) -> dict[str, torch.Tensor]:
        """The constants the steps read, by graph name, as they are now (device, dtype)."""
        values = {name: self._buffers[key] for name, key in self._values.items()}
        return values | self._host  # type: ignore[return-value]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"{self.path} takes {len(self.input_names)} inputs, got {len(inputs)}")
        values = self.constants()
        values.update(zip(self.input_names, inputs, strict=True))
        shapes = tuple(tuple(x.shape) for x in inputs)
        known = self._host_cache.get(shapes) if self._host_exports else None
        made: dict[str, torch.Tensor] = {}
        if known is not None:
            values.update(known)
        for step in self.steps:
            if step.host and known is not None:  # its results are in the cache
                for name in step.drop:
                    values.pop(name, None)
                continue
            out = step.kernel([values[name] for name in step.inputs])
            if isinstance(out, torch.Tensor):
                values[step.outputs[0]] = out
            else:
                values.update(zip(step.outputs, out, strict=False))
            if step.host:
                made.update((name, values[name]) for name in step.outputs if name in self._host_exports)
            for name in step.drop:
                del values[name]
        if known is None and self._host_exports:
            if len(self._host_cache) >= HOST_CACHE_SIZE:
                self._host_cache.clear()
            self._host_cache[shapes] = made
        return tuple(values[name] for name in self.output_names)


def _drop_redundant_clamps(steps: list[Step], outputs: list[str]) -> list[Step]:
    """Relu(x) or Clip(x) read only by a QuantizeLinear that clamps at least as tightly: the
    quantiser alone gives the same numbers, so it reads x."""
    readers = Counter(name for step in steps for name in step.inputs) + Counter(outputs)
    made_by = {name: step for step in steps for name in step.outputs}
    dropped: set[int] = set()
    for step in steps:
        quant = step.built.quant
        source = made_by.get(step.inputs[0]) if quant is not None else None
        if source is None or source.built.bounds is None or readers[step.inputs[0]] != 1:
            continue
        if quant is not None and quant.covers(source.built.bounds):
            step.inputs[0] = source.inputs[0]
            dropped.add(id(source))
    return [step for step in steps if id(step) not in dropped]


def _plan(steps: list[Step], foreign: list[str], outputs: list[str]) -> None:
    """Choose in-place kernels where safe, and when to free each value.

    Values that may share storage (a tensor and its reshapes, a tensor and what an in-place
    step made of it) form a group. A step may overwrite its first input if no member of that
    group is read later, is a graph output, or belongs to the caller (inputs, constants)."""
    last: dict[str, float] = {}
    for k, step in enumerate(steps):
        for name in step.inputs:
            last[name] = k
    for name in outputs:
        last[name] = math.inf
    group: dict[str, int] = {}
    members: dict[int, list[str]] = {}

    def join(name: str, gid: int | None = None) -> None:
        if gid is None:
            gid = len(members)
            members[gid] = []
        group[name] = gid
        members[gid].append(name)

    for name in foreign:
        join(name)
    pinned = {group[name] for name in foreign}
    for k, step in enumerate(steps):
        first = step.inputs[0] if step.inputs else None
        shares = step.built.view
        if step.built.inplace is not None and first is not None and first in group:
            gid = group[first]
            free = gid not in pinned and all(last.get(n, -1) <= k for n in members[gid])
            alone = all(n == first or group.get(n) != gid for n in step.inputs[1:])
            if free and alone:
                step.kernel = step.built.inplace
                shares = True
        for name in step.outputs:
            join(name, group[first] if shares and first in group else None)
            if step.host or step.built.frozen:  # cached for later calls, or a broadcast view
                pinned.add(group[name])
    keep = set(outputs) | set(foreign)
    for name, when in last.items():
        if name not in keep and when != math.inf:
            steps[int(when)].drop.append(name)


class _Loader:
    """Walks the graph once (ONNX lists nodes in topological order), folding and building."""

    def __init__(self, model: onnx.ModelProto, path: str, fake_quant: bool) -> None:
        self.path = path
        self.fake_quant = fake_quant
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        graph = model.graph
        self.constants: dict[str, torch.Tensor] = {t.name: _tensor(t) for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in self.constants]
        self.output_names = [o.name for o in graph.output]
        self.steps: list[Step] = []
        self.alias: dict[str, str] = {}  # a DequantizeLinear's output -> the value it already is
        self.quant: dict[str, Quant] = {}  # runtime values holding fake-quantised reals
        self.integers: dict[str, str] = {}  # such a value -> its integer form, where one is read
        self.host: set[str] = set()  # shape values (see the module's docstring)
        self.host_constants: set[str] = set()  # CPU copies of the constants shape-value steps read
        for proto in graph.node:
            if proto.domain not in ("", "ai.onnx"):
                raise UnsupportedModelError(
                    f"operator {proto.domain}.{proto.op_type} in {path} is not supported"
                )
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
            self.add(Node(proto.op_type, proto.name, tuple(proto.input), tuple(proto.output), attrs))
        for name in self.output_names:
            if name in self.quant:  # the graph hands out integers: give it those
                self.alias[name] = self.integer(name)

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def add(self, node: Node) -> None:
        x = node.inputs[0] if node.inputs else ""
        if node.op == "DequantizeLinear" and x in self.quant and self.quant[x].same(self.quant_params(node)):
            self.alias[node.outputs[0]] = x  # the value already is the dequantised one
            return
        # A shape-only op carries a fake-quantised tensor through (a per-axis one only if its
        # axis cannot move); every other reader of a quantised value reads its integers.
        passes = (
            node.op in SHAPE_OPS and x in self.quant and (self.quant[x].per_tensor or node.op == "Identity")
        )
        if not passes:
            node = replace(node, inputs=tuple(self.integer(i) if i in self.quant else i for i in node.inputs))
        builder = OPS.get(node.op)
        if builder is None:
            raise UnsupportedModelError(
                f"operator {node.op} (node {node.name!r}) in {self.path} is not supported"
            )
        built = builder(node, self)
        built.inputs = [self.resolve(name) for name in built.inputs]
        if all(name in self.constants for name in built.inputs):
            with torch.no_grad():
                out = built.kernel([self.constants[name] for name in built.inputs])
            outs = (out,) if isinstance(out, torch.Tensor) else out
            for name, value in zip(node.outputs, outs, strict=False):
                self.constants[name] = value
            self.quant.pop(node.outputs[0], None)  # a folded QuantizeLinear gives literal integers
            return
        if built.quant is not None:
            self.quant[node.outputs[0]] = built.quant
        if passes:
            self.quant[node.outputs[0]] = self.quant[x]
        host = node.op == "Shape" or (
            any(name in self.host for name in built.inputs)
            and all(name in self.host or name in self.constants for name in built.inputs)
        )
        if host:
            self.host.update(node.outputs)
            built.inputs = [self.host_constant(n) if n in self.constants else n for n in built.inputs]
        self.steps.append(Step(node.op, built, built.inputs, list(node.outputs), host=host))

    def host_constant(self, name: str) -> str:
        """A copy of constant `name` that stays on the CPU, for a shape-value step."""
        key = f"{name}#host"
        if key not in self.constants:
            self.constants[key] = self.constants[name]
            self.host_constants.add(key)
        return key

    def integer(self, name: str) -> str:
        """The integer form of fake-quantised value `name`, computed from it by a new step."""
        if name not in self.integers:
            quant = self.quant[name]
            key = f"{name}#int"
            scale = self.constant(f"{key}#scale", quant.scale)
            zero = self.constant(f"{key}#zero", quant.zero_point)
            axis = quant.axis

            def to_integer(v: list[torch.Tensor]) -> torch.Tensor:
                s, z = _along(v[1], axis, v[0]), _along(v[2], axis, v[0])
                return (torch.round(v[0] / s) + z).clamp_(quant.qmin, quant.qmax).to(quant.dtype)

            inputs = [self.resolve(name), scale, zero]
            self.steps.append(Step("QuantizeLinear", Built(to_integer, inputs), inputs, [key]))
            self.integers[name] = key
        return self.integers[name]

    def constant(self, name: str, value: torch.Tensor) -> str:
        self.constants[name] = value
        return name

    def is_const(self, name: str) -> bool:
        return name in self.constants

    def const(self, node: Node, index: int) -> torch.Tensor:
        """Input `index` of `node`, which this loader needs to know at load time."""
        name = node.inputs[index]
        if name not in self.constants:
            raise UnsupportedModelError(
                f"{node.op} (node {node.name!r}) in {self.path}: input {index} must be a constant"
            )
        return self.constants[name]

    def ints(self, node: Node, index: int) -> list[int]:
        return [int(v) for v in self.const(node, index).reshape(-1).tolist()]

    def unsupported(self, node: Node, what: str) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{node.op} (node {node.name!r}) in {self.path}: {what} is not supported"
        )

    def quant_params(self, node: Node) -> Quant:
        """The scale and zero point of a QuantizeLinear or DequantizeLinear node."""
        scale = self.const(node, 1).to(torch.float32)
        # ONNX's default zero point: uint8 0
        zero = self.const(node, 2) if node.has(2) else torch.zeros_like(scale, dtype=torch.uint8)
        if zero.dtype not in INT_RANGES:
            raise self.unsupported(node, f"quantised type {zero.dtype}")
        lo, hi = INT_RANGES[zero.dtype]
        return Quant(scale, zero.to(torch.int64), int(node.attr("axis", 1)), zero.dtype, lo, hi)


def _tensor(proto: onnx.TensorProto) -> torch.Tensor:
    array = numpy_helper.to_array(proto)
    if array.dtype in (np.float16, np.float64):
        array = array.astype(np.float32)  # one float type at rest; .to() picks the run-time one
    return torch.from_numpy(np.array(array))


def _along(value: torch.Tensor, axis: int, like: torch.Tensor) -> torch.Tensor:
    """A per-tensor or per-axis quantisation parameter, shaped to broadcast against `like`."""
    if value.numel() == 1:
        return value.reshape(())
    shape = [1] * like.dim()
    shape[axis % like.dim()] = -1
    return value.reshape(shape)


def _first(node: Node) -> list[str]:
    return [node.inputs[0]]


# --- quantisation -------------------------------------------------------------------------------


@_register("QuantizeLinear")
def _quantize(node: Node, ld: _Loader) -> Built:
    quant = ld.quant_params(node)
    x = node.inputs[0]
    scale = ld.constant(f"{node.outputs[0]}#scale", quant.scale)
    axis = quant.axis
    if ld.is_const(x):  # folded now: the literal integers

        def quantize(v: list[torch.Tensor]) -> torch.Tensor:
            s, z = _along(v[1], axis, v[0]), _along(quant.zero_point, axis, v[0])
            q = torch.round(v[0].to(torch.float32) / s) + z
            return q.clamp_(quant.qmin, quant.qmax).to(quant.dtype)

        return Built(quantize, [x, scale])
    if not ld.fake_quant:
        return Built(lambda v: v[0], [x], view=True, quant=quant)
    if quant.per_tensor:
        s = float(quant.scale.reshape(()))
        zero = int(quant.zero_point.reshape(()))
        lo, hi = float(quant.qmin - zero), float(quant.qmax - zero)

        # round(x / s) + zp, clamped, minus zp again: the integer offset cancels exactly. True
        # division, as onnxruntime's kernel does (a multiply by 1 / s can round differently).
        # In float16, x / s near the top of the int8 range carries ~1/8 step of rounding: the
        # quantiser then decides as well as the float16 convolution before it allows.
        def fake_quantize(v: list[torch.Tensor]) -> torch.Tensor:
            return torch.div(v[0], s).round_().clamp_(lo, hi).mul_(s)

        def fake_quantize_(v: list[torch.Tensor]) -> torch.Tensor:
            return v[0].div_(s).round_().clamp_(lo, hi).mul_(s)

        return Built(fake_quantize, [x], inplace=fake_quantize_, quant=quant)
    lows = ld.constant(f"{node.outputs[0]}#lo", (quant.qmin - quant.zero_point).to(torch.float32))
    highs = ld.constant(f"{node.outputs[0]}#hi", (quant.qmax - quant.zero_point).to(torch.float32))

    def fake_quantize_per_axis(v: list[torch.Tensor]) -> torch.Tensor:
        s, lo, hi = (_along(t, axis, v[0]) for t in v[1:])
        return torch.div(v[0], s).round_().clamp_(lo, hi).mul_(s)

    return Built(fake_quantize_per_axis, [x, scale, lows, highs], quant=quant)


@_register("DequantizeLinear")
def _dequantize(node: Node, ld: _Loader) -> Built:
    quant = ld.quant_params(node)
    scale = ld.constant(f"{node.outputs[0]}#scale", quant.scale)
    zero = ld.constant(f"{node.outputs[0]}#zero", quant.zero_point)
    axis = quant.axis

    # The subtraction in integers (exact), then one rounding to float, as the operator defines.
    def dequantize(v: list[torch.Tensor]) -> torch.Tensor:
        q = v[0].to(torch.int64) - _along(v[2], axis, v[0])
        return q.to(v[1].dtype) * _along(v[1], axis, v[0])

    return Built(dequantize, [node.inputs[0], scale, zero])


# --- element-wise -------------------------------------------------------------------------------

UNARY: dict[
    str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor] | None]
] = {
    # operator: (function, in-place function)
    "Relu": (torch.relu, torch.relu_),
    "Sigmoid": (torch.sigmoid, torch.sigmoid_),
    "Tanh": (torch.tanh, torch.tanh_),
    "Sqrt": (torch.sqrt, torch.sqrt_),
    "Reciprocal": (torch.reciprocal, torch.reciprocal_),
    "Exp": (torch.exp, torch.exp_),
    "Log": (torch.log, torch.log_),
    "Neg": (torch.neg, torch.neg_),
    "Abs": (torch.abs, torch.abs_),
    "Erf": (torch.erf, torch.erf_),
    "Floor": (torch.floor, torch.floor_),
    "Ceil": (torch.ceil, torch.ceil_),
    "Softplus": (F.softplus, None),
}


@_register(*UNARY)
def _unary(node: Node, ld: _Loader) -> Built:
    fn, fn_ = UNARY[node.op]
    bounds = (0.0, math.inf) if node.op == "Relu" else None
    inplace = None if fn_ is None else (lambda v: fn_(v[0]))
    return Built(lambda v: fn(v[0]), _first(node), inplace=inplace, bounds=bounds)


@_register("Identity")
def _identity(node: Node, ld: _Loader) -> Built:
    return Built(lambda v: v[0], _first(node), view=True)


def _divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point() or b.is_floating_point():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")  # ONNX's integer Div truncates, like C


BINARY: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]] = {
    "Add": (torch.add, "add_"),
    "Sub": (torch.sub, "sub_"),
    "Mul": (torch.mul, "mul_"),
    "Div": (_divide, "div_"),
    "Pow": (torch.pow, "pow_"),
}


@_register(*BINARY)
def _binary(node: Node, ld: _Loader) -> Built:
    fn, method = BINARY[node.op]  # ONNX broadcasts as numpy does, as torch does

    def binary_(v: list[torch.Tensor]) -> torch.Tensor:
        a, b = v
        # In place only where the result has a's shape and type (no broadcast onto a).
        if (
            a.is_floating_point()
            and a.dtype == b.dtype
            and a.shape == torch.broadcast_shapes(a.shape, b.shape)
        ):
            return getattr(a, method)(b)
        return fn(a, b)

    return Built(lambda v: fn(v[0], v[1]), list(node.inputs[:2]), inplace=binary_)


@_register("MatMul")
def _matmul(node: Node, ld: _Loader) -> Built:
    return Built(lambda v: torch.matmul(v[0], v[1]), list(node.inputs[:2]))  # numpy's rules, as ONNX


@_register("LeakyRelu")
def _leaky_relu(node: Node, ld: _Loader) -> Built:
    alpha = float(node.attr("alpha", 0.01))
    return Built(
        lambda v: F.leaky_relu(v[0], alpha), _first(node), inplace=lambda v: F.leaky_relu_(v[0], alpha)
    )


@_register("Clip")
def _clip(node: Node, ld: _Loader) -> Built:
    if ld.opset < 11:
        lo, hi = node.attr("min"), node.attr("max")
    else:
        lo = float(ld.const(node, 1).item()) if node.has(1) else None
        hi = float(ld.const(node, 2).item()) if node.has(2) else None
    bounds = (-math.inf if lo is None else lo, math.inf if hi is None else hi)
    return Built(
        lambda v: torch.clamp(v[0], lo, hi),
        _first(node),
        inplace=lambda v: v[0].clamp_(lo, hi),
        bounds=bounds,
    )


@_register("Softmax")
def _softmax(node: Node, ld: _Loader) -> Built:
    if ld.opset < 13:
        raise ld.unsupported(node, "Softmax before opset 13 (which flattens to 2-D)")
    axis = int(node.attr("axis", -1))
    return Built(lambda v: torch.softmax(v[0], axis), _first(node))


# --- convolution, normalisation, pooling ------------------------------------------------------


def _torch_pads(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX's per-axis begin/end lists -> F.pad's flat list, last axis first."""
    flat: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        flat += [b, e]
    return flat


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


PadsFor = Callable[[Sequence[int]], tuple[list[int], list[int]]]


def _spatial_pads(node: Node, ld: _Loader, kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int]) -> PadsFor:  # fmt: skip
    """Begin and end padding per spatial axis, as a function of the input's spatial size."""
    auto = node.attr("auto_pad", "NOTSET")
    n = len(kernel)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        upper = auto == "SAME_UPPER"

        def same(hw: Sequence[int]) -> tuple[list[int], list[int]]:
            pairs = [_same_pads(hw[i], kernel[i], strides[i], dilations[i], upper) for i in range(n)]
            return [p[0] for p in pairs], [p[1] for p in pairs]

        return same
    if auto not in ("NOTSET", "VALID"):
        raise ld.unsupported(node, f"auto_pad {auto}")
    pads = [int(p) for p in node.attr("pads", [0] * (2 * n))] if auto == "NOTSET" else [0] * (2 * n)
    fixed = (pads[:n], pads[n:])
    return lambda hw: fixed


def _conv_shape(node: Node, ld: _Loader) -> tuple[list[int], tuple[int, ...], tuple[int, ...], int]:
    """A (transposed) convolution's kernel size, strides, dilations and groups."""
    kernel = node.attr("kernel_shape")
    if kernel is None:
        kernel = list(ld.const(node, 1).shape[2:])
    n = len(kernel)
    strides = tuple(int(s) for s in node.attr("strides", [1] * n))
    dilations = tuple(int(d) for d in node.attr("dilations", [1] * n))
    return list(kernel), strides, dilations, int(node.attr("group", 1))


def _filters_channels_last(node: Node, ld: _Loader, n: int) -> None:
    """Constant 2-D filters in the activations' layout, once at load."""
    if n == 2 and ld.is_const(node.inputs[1]):
        ld.constant(node.inputs[1], ld.const(node, 1).contiguous(memory_format=torch.channels_last))


@_register("Conv")
def _conv(node: Node, ld: _Loader) -> Built:
    kernel, strides, dilations, groups = _conv_shape(node, ld)
    n = len(kernel)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(n)
    if conv is None:
        raise ld.unsupported(node, f"{n}-D convolution")
    pads_for = _spatial_pads(node, ld, kernel, strides, dilations)
    _filters_channels_last(node, ld, n)

    def convolve(v: list[torch.Tensor]) -> torch.Tensor:
        x, w, b = v[0], v[1], v[2] if len(v) > 2 else None
        if x.dim() == 4:
            # Channels-last memory (logical NCHW all the same) is what oneDNN and cuDNN run
            # fastest; the outputs stay channels-last, so this copies once, at the first conv.
            x = x.contiguous(memory_format=torch.channels_last)
        begin, end = pads_for(x.shape[2:])
        if begin == end:
            return conv(x, w, b, strides, tuple(begin), dilations, groups)
        # TensorFlow-style SAME padding puts the odd pixel after: pad explicitly
        return conv(F.pad(x, _torch_pads(begin, end)), w, b, strides, 0, dilations, groups)

    return Built(convolve, [name for name in node.inputs[:3] if name])


@_register("ConvTranspose")
def _conv_transpose(node: Node, ld: _Loader) -> Built:
    kernel, strides, dilations, groups = _conv_shape(node, ld)
    n = len(kernel)
    deconv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}.get(n)
    if deconv is None:
        raise ld.unsupported(node, f"{n}-D transposed convolution")
    if node.attr("output_shape") is not None or node.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ld.unsupported(node, "output_shape or SAME auto_pad")
    extra = tuple(int(p) for p in node.attr("output_padding", [0] * n))
    pads = [int(p) for p in node.attr("pads", [0] * (2 * n))]
    if node.attr("auto_pad", "NOTSET") == "VALID":
        pads = [0] * (2 * n)
    begin, end = pads[:n], pads[n:]
    if any(e >= max(s, d) for e, s, d in zip(extra, strides, dilations, strict=True)):
        raise ld.unsupported(node, "output_padding of a stride or more")
    _filters_channels_last(node, ld, n)

    def transposed(v: list[torch.Tensor]) -> torch.Tensor:
        x, w, b = v[0], v[1], v[2] if len(v) > 2 else None
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if begin == end:
            return deconv(x, w, b, strides, tuple(begin), extra, groups, dilations)
        # Uneven padding crops the full result (torch's padding crops both ends alike)
        y = deconv(x, w, b, strides, 0, extra, groups, dilations)
        for axis, (p, q) in enumerate(zip(begin, end, strict=True), start=2):
            y = y.narrow(axis, p, y.shape[axis] - p - q)
        return y

    return Built(transposed, [name for name in node.inputs[:3] if name])


@_register("BatchNormalization")
def _batch_norm(node: Node, ld: _Loader) -> Built:
    if len(node.outputs) > 1 or node.attr("training_mode", 0):
        raise ld.unsupported(node, "training-mode batch normalisation")
    eps = float(node.attr("epsilon", 1e-5))

    def batch_norm(v: list[torch.Tensor]) -> torch.Tensor:
        x, scale, bias, mean, var = v
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)

    return Built(batch_norm, list(node.inputs[:5]))


@_register("InstanceNormalization")
def _instance_norm(node: Node, ld: _Loader) -> Built:
    eps = float(node.attr("epsilon", 1e-5))

    # x * k + (bias - mean * k), k = scale / sqrt(var + eps): two passes over x, in its memory
    # format. The statistics are float32 whatever x is (float16 sums drift over a large frame).
    def instance_norm(v: list[torch.Tensor]) -> torch.Tensor:
        x, scale, bias = v
        spatial = tuple(range(2, x.dim()))
        var, mean = torch.var_mean(x.to(torch.float32), dim=spatial, correction=0, keepdim=True)
        shape = [1, -1] + [1] * len(spatial)
        k = scale.to(torch.float32).reshape(shape) * torch.rsqrt(var + eps)
        offset = bias.to(torch.float32).reshape(shape) - mean * k
        return torch.addcmul(offset.to(x.dtype), x, k.to(x.dtype))

    return Built(instance_norm, list(node.inputs[:3]))


@_register("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: Node, ld: _Loader) -> Built:
    if node.op == "GlobalAveragePool":
        return Built(lambda v: v[0].mean(dim=tuple(range(2, v[0].dim())), keepdim=True), _first(node))
    return Built(lambda v: v[0].amax(dim=tuple(range(2, v[0].dim())), keepdim=True), _first(node))


@_register("MaxPool", "AveragePool")
def _pool(node: Node, ld: _Loader) -> Built:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise ld.unsupported(node, "the Indices output")
    kernel = [int(k) for k in node.attr("kernel_shape")]
    if len(kernel) != 2:
        raise ld.unsupported(node, f"{len(kernel)}-D pooling")
    strides = tuple(int(s) for s in node.attr("strides", [1, 1]))
    dilations = tuple(int(d) for d in node.attr("dilations", [1, 1]))
    ceil = bool(node.attr("ceil_mode", 0))
    pads_for = _spatial_pads(node, ld, kernel, strides, dilations)
    if node.op == "MaxPool":

        def max_pool(v: list[torch.Tensor]) -> torch.Tensor:
            x = v[0]
            begin, end = pads_for(x.shape[2:])
            if begin == end and all(2 * p <= k for p, k in zip(begin, kernel, strict=True)):
                return F.max_pool2d(x, kernel, strides, begin, dilations, ceil)
            x = F.pad(x, _torch_pads(begin, end), value=float("-inf"))
            return F.max_pool2d(x, kernel, strides, 0, dilations, ceil)

        return Built(max_pool, _first(node))
    if any(d != 1 for d in dilations):
        raise ld.unsupported(node, "dilated average pooling")
    include_pad = bool(node.attr("count_include_pad", 0))
    name = node.name

    def average_pool(v: list[torch.Tensor]) -> torch.Tensor:
        begin, end = pads_for(v[0].shape[2:])
        if begin != end or any(2 * p > k for p, k in zip(begin, kernel, strict=True)):
            raise UnsupportedModelError(f"AveragePool (node {name!r}): asymmetric padding is not supported")
        return F.avg_pool2d(v[0], kernel, strides, begin, ceil, include_pad)

    return Built(average_pool, _first(node))


# --- shape and layout ----------------------------------------------------------------------------


def _reshape_to(x: torch.Tensor, target: Sequence[int], allowzero: bool) -> torch.Tensor:
    shape = [x.shape[i] if (s == 0 and not allowzero) else s for i, s in enumerate(target)]
    # A file made for batch 1 pins it in the target; follow the input's batch instead.
    batched = shape and shape[0] == 1 and -1 not in shape and x.dim() and x.shape[0] > 1
    if batched and math.prod(shape) * x.shape[0] == x.numel():
        shape[0] = x.shape[0]
    return x.reshape(shape)


@_register("Reshape")
def _reshape(node: Node, ld: _Loader) -> Built:
    allowzero = bool(node.attr("allowzero", 0))
    if ld.opset < 5 or ld.is_const(node.inputs[1]):
        target = [int(s) for s in node.attr("shape")] if ld.opset < 5 else ld.ints(node, 1)
        return Built(lambda v: _reshape_to(v[0], target, allowzero), _first(node), view=True)
    return Built(
        lambda v: _reshape_to(v[0], [int(s) for s in v[1].tolist()], allowzero),
        list(node.inputs[:2]),
        view=True,
    )


@_register("Transpose")
def _transpose(node: Node, ld: _Loader) -> Built:
    perm = node.attr("perm")
    if perm is None:
        return Built(lambda v: v[0].permute(*reversed(range(v[0].dim()))), _first(node), view=True)
    order = [int(p) for p in perm]
    return Built(lambda v: v[0].permute(order), _first(node), view=True)


@_register("Flatten")
def _flatten(node: Node, ld: _Loader) -> Built:
    axis = int(node.attr("axis", 1))

    def flatten(v: list[torch.Tensor]) -> torch.Tensor:
        a = axis % v[0].dim() if axis else 0
        return v[0].reshape(math.prod(v[0].shape[:a]), -1)

    return Built(flatten, _first(node), view=True)


def _axes(node: Node, ld: _Loader) -> list[int] | None:
    if ld.opset >= 13:
        return ld.ints(node, 1) if node.has(1) else None
    axes = node.attr("axes")
    return None if axes is None else [int(a) for a in axes]


@_register("Squeeze")
def _squeeze(node: Node, ld: _Loader) -> Built:
    axes = _axes(node, ld)
    if axes is None:
        return Built(lambda v: v[0].squeeze(), _first(node), view=True)
    return Built(lambda v: v[0].squeeze(tuple(axes)), _first(node), view=True)


@_register("Unsqueeze")
def _unsqueeze(node: Node, ld: _Loader) -> Built:
    axes = _axes(node, ld)
    if axes is None:
        raise ld.unsupported(node, "Unsqueeze without axes")

    def unsqueeze(v: list[torch.Tensor]) -> torch.Tensor:
        rank = v[0].dim() + len(axes)
        shape = list(v[0].shape)
        for a in sorted(a % rank for a in axes):
            shape.insert(a, 1)
        return v[0].reshape(shape)

    return Built(unsqueeze, _first(node), view=True)


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


@_register("Concat")
def _concat(node: Node, ld: _Loader) -> Built:
    axis = int(node.attr("axis"))

    def concat(v: list[torch.Tensor]) -> torch.Tensor:
        # torch.cat of mixed memory formats writes plain NCHW, and the next convolution copies it
        # back: where any part is channels-last (a convolution's output), make them all so.
        if len(v) > 1 and any(_channels_last(t) for t in v) and not all(_channels_last(t) for t in v):
            v = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in v]
        return torch.cat(v, dim=axis)

    return Built(concat, [name for name in node.inputs if name])


@_register("Shape")
def _shape(node: Node, ld: _Loader) -> Built:
    start, end = int(node.attr("start", 0)), node.attr("end")
    stop = None if end is None else int(end)
    return Built(lambda v: torch.tensor(v[0].shape[start:stop], dtype=torch.int64), _first(node))


@_register("Gather")
def _gather(node: Node, ld: _Loader) -> Built:
    axis = int(node.attr("axis", 0))

    def gather(v: list[torch.Tensor]) -> torch.Tensor:
        x, indices = v[0], v[1].to(v[0].device)
        a = axis % x.dim()
        flat = indices.reshape(-1).to(torch.int64)
        flat = torch.where(flat < 0, flat + x.shape[a], flat)  # negative indices count from the end
        return x.index_select(a, flat).reshape((*x.shape[:a], *indices.shape, *x.shape[a + 1 :]))

    return Built(gather, list(node.inputs[:2]))


def _slice_axes(
    x: torch.Tensor, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int] | None,
    steps: Sequence[int] | None,
) -> torch.Tensor:  # fmt: skip
    """ONNX's Slice: Python's slice clamping is ONNX's for either sign of step."""
    index: list[slice] = [slice(None)] * x.dim()
    backwards = []
    for k, (start, stop) in enumerate(zip(starts, ends, strict=True)):
        a = (axes[k] if axes is not None else k) % x.dim()
        step = steps[k] if steps is not None else 1
        if step == 0:
            raise UnsupportedModelError("Slice with a step of 0")
        index[a] = slice(start, stop, step)
        if step < 0:
            backwards.append(a)
    if not backwards:
        return x[tuple(index)]
    for a in backwards:  # torch views take positive steps only: pick the elements instead
        picked = range(*index[a].indices(x.shape[a]))
        x = x.index_select(a, torch.tensor(picked, dtype=torch.int64, device=x.device))
        index[a] = slice(None)
    return x[tuple(index)]


@_register("Slice")
def _slice(node: Node, ld: _Loader) -> Built:
    if ld.opset < 10:
        starts, ends = [int(s) for s in node.attr("starts")], [int(e) for e in node.attr("ends")]
        axes_attr = node.attr("axes")
        axes = None if axes_attr is None else [int(a) for a in axes_attr]
        return Built(lambda v: _slice_axes(v[0], starts, ends, axes, None), _first(node), view=True)
    names = [node.inputs[i] if node.has(i) else "" for i in range(1, 5)]
    if all(name == "" or ld.is_const(name) for name in names):
        bounds = [ld.ints(node, i) if node.has(i) else None for i in range(1, 5)]
        lo, hi, axes, steps = bounds
        assert lo is not None and hi is not None
        return Built(lambda v: _slice_axes(v[0], lo, hi, axes, steps), _first(node), view=True)
    present = [i for i, name in enumerate(names) if name]  # read at run time (shape values)

    def dynamic_slice(v: list[torch.Tensor]) -> torch.Tensor:
        given: list[list[int] | None] = [None] * 4
        for i, t in zip(present, v[1:], strict=True):
            given[i] = [int(e) for e in t.reshape(-1).tolist()]
        lo, hi, axes, steps = given
        assert lo is not None and hi is not None
        return _slice_axes(v[0], lo, hi, axes, steps)

    return Built(dynamic_slice, [node.inputs[0], *(names[i] for i in present)], view=True)


# ONNX's TensorProto data types -> torch's (the float ones: see _cast)
ONNX_TYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}


@_register("Cast")
def _cast(node: Node, ld: _Loader) -> Built:
    target = ONNX_TYPES.get(int(node.attr("to")))
    if target is None:
        raise ld.unsupported(node, f"a cast to ONNX type {node.attr('to')}")
    if target.is_floating_point:
        # A float stays in the type the module runs in (one float type at a time, see .to());
        # integers become float32.
        return Built(
            lambda v: v[0] if v[0].is_floating_point() else v[0].to(torch.float32), _first(node), view=True
        )
    # float -> integer truncates towards zero, as ONNX's (C's) conversion does
    return Built(lambda v: v[0].to(target), _first(node), view=True)


@_register("Expand")
def _expand(node: Node, ld: _Loader) -> Built:
    def expand(v: list[torch.Tensor]) -> torch.Tensor:
        shape = tuple(int(s) for s in v[1].tolist())
        return v[0].expand(torch.broadcast_shapes(v[0].shape, shape))  # both ways, as ONNX broadcasts

    # A view whose elements share memory: nothing may write into it
    return Built(expand, list(node.inputs[:2]), view=True, frozen=True)


@_register("Constant")
def _constant(node: Node, ld: _Loader) -> Built:
    attrs = node.attrs
    if "value" in attrs:
        value = _tensor(attrs["value"])
    elif "value_float" in attrs or "value_floats" in attrs:
        value = torch.tensor(attrs.get("value_float", attrs.get("value_floats")), dtype=torch.float32)
    elif "value_int" in attrs or "value_ints" in attrs:
        value = torch.tensor(attrs.get("value_int", attrs.get("value_ints")), dtype=torch.int64)
    else:
        raise ld.unsupported(node, f"a Constant given as {sorted(attrs)}")
    return Built(lambda v: value, [])


PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@_register("Pad")
def _pad(node: Node, ld: _Loader) -> Built:
    mode = PAD_MODES.get(node.attr("mode", "constant"))
    if mode is None:
        raise ld.unsupported(node, f"mode {node.attr('mode')}")
    if ld.opset < 11:
        pads, value = [int(p) for p in node.attr("pads")], float(node.attr("value", 0.0))
    else:
        pads = ld.ints(node, 1)
        value = float(ld.const(node, 2).item()) if node.has(2) else 0.0
    if node.has(3):
        raise ld.unsupported(node, "the axes input")
    if any(p < 0 for p in pads):
        raise ld.unsupported(node, "negative padding")
    rank = len(pads) // 2
    begin, end = pads[:rank], pads[rank:]
    axes = [a for a in range(rank) if begin[a] or end[a]]
    if not axes:
        return Built(lambda v: v[0], _first(node), view=True)
    if mode == "constant":
        flat = _torch_pads(begin[axes[0] :], end[axes[0] :])
        return Built(lambda v: F.pad(v[0], flat, value=value), _first(node))
    if len(axes) > 3:
        raise ld.unsupported(node, f"{mode} padding of {len(axes)} axes")
    # torch pads the trailing axes of a [N, C, ...] tensor: bring the padded axes last (an NHWC
    # tensor's H and W, say), pad, and put them back.
    others = [a for a in range(rank) if a not in axes]
    order = others + axes
    inverse = [order.index(a) for a in range(rank)]
    flat = _torch_pads([begin[a] for a in axes], [end[a] for a in axes])

    def pad(v: list[torch.Tensor]) -> torch.Tensor:
        x = v[0].permute(order)
        if len(others) in (1, 2):  # already [N, C, ...] or [N, ...]: no copy, memory format kept
            return F.pad(x, flat, mode=mode).permute(inverse)
        lead, sizes = x.shape[: len(others)], x.shape[len(others) :]
        y = F.pad(x.reshape(1, -1, *sizes), flat, mode=mode)
        return y.reshape(*lead, *y.shape[2:]).permute(inverse)

    return Built(pad, _first(node))


@_register("Resize", "Upsample")
def _resize(node: Node, ld: _Loader) -> Built:
    mode = node.attr("mode", "nearest")
    sizes: list[int] = []
    dynamic = False
    if node.op == "Upsample" or ld.opset < 11:  # inputs X, scales; always the asymmetric mapping
        ctm, nearest = "asymmetric", "floor"
        scales = [
            float(s)
            for s in (node.attr("scales") if ld.opset < 9 else ld.const(node, 1).reshape(-1).tolist())
        ]
    else:
        ctm = node.attr("coordinate_transformation_mode", "half_pixel")
        nearest = node.attr("nearest_mode", "round_prefer_floor")
        has_scales = node.has(2) and ld.const(node, 2).numel() > 0
        scales = [float(s) for s in ld.const(node, 2).reshape(-1).tolist()] if has_scales else []
        dynamic = node.has(3) and not ld.is_const(node.inputs[3])  # sizes from shape arithmetic
        sizes = ld.ints(node, 3) if node.has(3) and not dynamic else []
        if node.attr("antialias", 0) or node.attr("axes") is not None:
            raise ld.unsupported(node, "antialias or axes")
        if node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise ld.unsupported(node, "keep_aspect_ratio_policy")
    if scales and any(s != 1.0 for s in scales[:2]):
        raise ld.unsupported(node, "resizing the batch or channel axis")
    spatial_scales, spatial_sizes = scales[2:], sizes[2:]  # sizes[:2] are taken to be the input's
    if mode == "nearest":
        if ctm not in NEAREST_COORDINATES or nearest not in NEAREST_ROUNDING:
            raise ld.unsupported(node, f"nearest resize with {ctm} / {nearest}")
    elif mode != "linear" or ctm not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        raise ld.unsupported(node, f"{mode} resize with {ctm}")
    if not dynamic and not spatial_sizes and all(s == 1.0 for s in spatial_scales):
        return Built(lambda v: v[0], _first(node), view=True)
    inputs = [node.inputs[0], node.inputs[3]] if dynamic else _first(node)

    def sizes_of(v: list[torch.Tensor]) -> list[int]:
        return [int(s) for s in v[1].tolist()[2:]] if dynamic else spatial_sizes

    if mode == "linear":
        align, name = ctm == "align_corners", {3: "linear", 4: "bilinear", 5: "trilinear"}

        def linear(v: list[torch.Tensor]) -> torch.Tensor:
            x, size = v[0], sizes_of(v)
            if size:
                return F.interpolate(x, size=size, mode=name[x.dim()], align_corners=align)
            # The given scale, not out / in, maps the coordinates, as in ONNX.
            return F.interpolate(x, scale_factor=spatial_scales, mode=name[x.dim()], align_corners=align)

        return Built(linear, inputs)

    def nearest_resize(v: list[torch.Tensor]) -> torch.Tensor:
        x, size = v[0], sizes_of(v)
        sources = []
        for axis in range(2, x.dim()):
            n_in = x.shape[axis]
            n_out = size[axis - 2] if size else math.floor(n_in * spatial_scales[axis - 2])
            scale = float(np.float32(n_out) / np.float32(n_in)) if size else spatial_scales[axis - 2]
            sources.append(_nearest_sources(n_in, n_out, scale, ctm, nearest))
        repeats = [_repeat_factor(source) for source in sources]
        ry, rx = repeats[0], repeats[-1]
        if x.dim() == 4 and ry and rx:  # each pixel k times: a broadcast copy, no gather
            return _repeat_pixels(x, ry, rx)
        for axis, source in enumerate(sources, start=2):
            x = x.index_select(axis, torch.from_numpy(source).to(x.device))
        return x

    # (view: with a factor of 1 everywhere the broadcast copy is a view of the input)
    return Built(nearest_resize, inputs, view=True)


NEAREST_COORDINATES = (
    "asymmetric",
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "align_corners",
)
NEAREST_ROUNDING = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


@functools.lru_cache(maxsize=256)
def _nearest_sources(n_in: int, n_out: int, scale: float, ctm: str, rounding: str) -> np.ndarray:
    """Source index of each output position along one axis, by ONNX's formulas, computed in
    float32 as onnxruntime computes them (torch's nearest modes round some exact ties the other
    way)."""
    i = np.arange(n_out, dtype=np.float32)
    s = np.float32(scale)
    half = np.float32(0.5)
    if ctm == "asymmetric":
        x = i / s
    elif ctm == "tf_half_pixel_for_nn":
        x = (i + half) / s
    elif ctm == "align_corners":
        x = i * np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.zeros_like(i)
    elif ctm == "pytorch_half_pixel" and n_out == 1:
        x = np.zeros_like(i)
    else:  # half_pixel
        x = (i + half) / s - half
    if rounding == "floor":
        k = np.floor(x)
    elif rounding == "ceil":
        k = np.ceil(x)
    else:  # to nearest; a tie (x = n + 0.5) goes down or up as the mode says
        tie = x == np.floor(x) + half
        k = np.where(tie, np.floor(x) if rounding == "round_prefer_floor" else np.ceil(x), np.round(x))
    return np.clip(k, 0, n_in - 1).astype(np.int64)


def _repeat_factor(source: np.ndarray) -> int | None:
    """k if `source` is 0, 0, .., 1, 1, .. (each index k times), else None."""
    n_in = int(source[-1]) + 1
    k = len(source) // n_in
    if k * n_in == len(source) and np.array_equal(source, np.arange(len(source)) // k):
        return k
    return None


def _repeat_pixels(x: torch.Tensor, sy: int, sx: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H * sy, W * sx], each pixel repeated, in x's memory format."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, sy, w, sx, c)
        return y.reshape(n, h * sy, w * sx, c).permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, sy, w, sx).reshape(n, c, h * sy, w * sx)
