"""The 26-style network's torch port against onnxruntime running the file itself, on real frames.

Where a side is not a multiple of 4 the file's own output is larger than its input (two
stride-2 steps, two 2x upsamplings); MultiStyle instead reflects the bottom and right edges
out to the next multiple and crops the result. The reference for such sizes is therefore
onnxruntime on the same reflected frame, cropped the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from frameq.samples import sample_clip
from models import multistyle
from models.multistyle import N_STYLES, MultiStyle
from models.weights import model_path

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev"
TOLERANCE = 1e-3  # on 0..1 outputs


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a machine busy with other work, threads that wait for each
    other at every operator make these tests 3x slower (and they check results, not speed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def network() -> MultiStyle:
    return MultiStyle.load(model_path("multistyle26.onnx")).eval()


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path("multistyle26.onnx")), providers=["CPUExecutionProvider"])


@functools.cache
def davis_frame() -> np.ndarray:
    """DAVIS `lucia` frame 40, 854 x 480: a person walking down a street."""
    with Image.open(DAVIS / "images" / "lucia" / "00040.jpg") as image:
        return np.array(image.convert("RGB"))


@functools.cache
def carphone_frame() -> np.ndarray:
    """carphone frame 30, 176 x 144: a face in a car."""
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("clip too short")


FRAMES = {"davis": davis_frame, "carphone": carphone_frame}


def tensor(rgb: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, h, w] in 0..1, resized (area-averaged) to `size`."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    if size is not None and size != tuple(x.shape[-2:]):
        x = torch.nn.functional.interpolate(x, size=size, mode="area")
    return x.contiguous()


def one_hot(style: int) -> np.ndarray:
    w = np.zeros(N_STYLES, np.float32)
    w[style] = 1.0
    return w


def reference(session: ort.InferenceSession, x: torch.Tensor, weights: np.ndarray) -> np.ndarray:
    """onnxruntime on x [1, 3, H, W], reflected to a multiple of 4 first and cropped after."""
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
    (out,) = session.run(None, {"image": padded.numpy(), "style_weights": weights})
    return out[:, :, :h, :w]


def ours(network: MultiStyle, x: torch.Tensor, weights: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return network(x, torch.from_numpy(weights)).numpy()


BLEND = np.zeros(N_STYLES, np.float32)
BLEND[[2, 9, 17]] = [0.5, 0.3, 0.2]
WEIGHTS = {
    "style0": one_hot(0),
    "style7": one_hot(7),
    "style13": one_hot(13),
    "style25": one_hot(25),
    "blend": BLEND,
}


@pytest.mark.parametrize(
    ("frame", "size"),
    [("davis", (192, 340)), ("davis", (157, 283)), ("carphone", None), ("carphone", (101, 126))],
)
def test_matches_onnxruntime(
    network: MultiStyle, session: ort.InferenceSession, frame: str, size: tuple[int, int] | None
) -> None:
    x = tensor(FRAMES[frame](), size)
    errors = {}
    for name, weights in WEIGHTS.items():
        expected = reference(session, x, weights)
        got = ours(network, x, weights)
        assert got.shape == x.shape
        assert expected.std() > 0.05  # a real picture came out, not a flat colour
        errors[name] = float(np.abs(got - expected).max())
    assert max(errors.values()) <= TOLERANCE, errors


def test_full_size_davis_frame(network: MultiStyle, session: ort.InferenceSession) -> None:
    """DAVIS at its own 854 x 480: the full-size layers run in several bands of rows."""
    x = tensor(davis_frame())
    assert x.shape[-2] * x.shape[-1] > 2 * multistyle.BAND_PIXELS
    assert np.abs(ours(network, x, BLEND) - reference(session, x, BLEND)).max() <= TOLERANCE


def test_narrow_bands_with_a_batch(
    network: MultiStyle, session: ort.InferenceSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bands of a few rows in every layer, two frames with styles of their own, an odd size:
    band edges, the residual, upsampling and output steps and the crop all run banded."""
    monkeypatch.setattr(multistyle, "BAND_PIXELS", 1500)
    x = torch.cat([tensor(davis_frame(), (157, 283)), tensor(carphone_frame(), (157, 283))])
    rows = np.stack([one_hot(8), BLEND])
    got = ours(network, x, rows)
    for k in range(2):
        expected = reference(session, x[k : k + 1], rows[k])
        assert np.abs(got[k : k + 1] - expected).max() <= TOLERANCE


def test_op_by_op_path_matches_onnxruntime(session: ort.InferenceSession) -> None:
    """The path CUDA takes, run here in float32."""
    network = MultiStyle.load(model_path("multistyle26.onnx")).eval()
    network.cpu_path = False
    x = tensor(davis_frame(), (157, 283))
    assert np.abs(ours(network, x, BLEND) - reference(session, x, BLEND)).max() <= TOLERANCE


def test_weights_changed_in_place_are_used(network: MultiStyle) -> None:
    """The CPU path's rearranged filters follow the weights (here: loaded under
    inference_mode, then mirrored in place)."""
    x = tensor(carphone_frame(), (64, 96))
    with torch.inference_mode():
        moved = MultiStyle.load(model_path("multistyle26.onnx")).to("cpu", torch.float32)
        before = moved(x, torch.from_numpy(BLEND))
    assert np.abs(before.numpy() - ours(network, x, BLEND)).max() <= 1e-5
    edited = MultiStyle.load(model_path("multistyle26.onnx"))
    edited(x, torch.from_numpy(BLEND))
    with torch.no_grad():
        weight = edited.get_buffer("w_expand_2")  # the last layer: its filters are rearranged
        weight.copy_(weight.flip(-1))
    after = ours(edited, x, BLEND)
    assert np.abs(after - ours(network, x, BLEND)).max() > 0.01


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_filters_are_packed_for_onednn(network: MultiStyle) -> None:
    """Where packing fails the CPU path falls back to F.conv2d, correct but slower."""
    assert all(network._cpu_weight(i).is_mkldnn for i in range(len(multistyle.LAYERS)))


def test_threads_keep_their_own_buffers(network: MultiStyle) -> None:
    frames = [tensor(davis_frame(), (96, 160)), tensor(carphone_frame(), (96, 160))]
    alone = [ours(network, f, BLEND) for f in frames]
    with ThreadPoolExecutor(2) as threads:
        together = list(threads.map(lambda f: ours(network, f, BLEND), frames * 3))
    for i, out in enumerate(together):
        assert np.abs(out - alone[i % 2]).max() <= 1e-5
    network.release()
    assert np.abs(ours(network, frames[0], BLEND) - alone[0]).max() <= 1e-5


def test_onnxruntime_takes_the_file_at_a_multiple_of_4_without_help(
    network: MultiStyle, session: ort.InferenceSession
) -> None:
    """At 144 x 176 (carphone's own size) no reflection is added: this is the file, as is."""
    x = tensor(carphone_frame())
    (expected,) = session.run(None, {"image": x.numpy(), "style_weights": one_hot(4)})
    assert np.abs(ours(network, x, one_hot(4)) - expected).max() <= TOLERANCE


def test_styles_differ(network: MultiStyle) -> None:
    x = tensor(davis_frame(), (120, 212))
    a, b = ours(network, x, one_hot(3)), ours(network, x, one_hot(21))
    assert np.abs(a - b).mean() > 0.05


def test_batch_equals_single_calls(network: MultiStyle) -> None:
    x = torch.cat([tensor(davis_frame(), (144, 176)), tensor(carphone_frame())])
    rows = np.stack([one_hot(6), BLEND])
    shared = ours(network, x, one_hot(11))
    per_frame = ours(network, x, rows)
    for k in range(2):
        assert np.abs(shared[k] - ours(network, x[k : k + 1], one_hot(11))[0]).max() <= 1e-5
        assert np.abs(per_frame[k] - ours(network, x[k : k + 1], rows[k])[0]).max() <= 1e-5
    assert np.abs(per_frame[0] - per_frame[1]).mean() > 0.05


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (61, 97), (130, 35)])
def test_output_has_the_input_size(network: MultiStyle, size: tuple[int, int]) -> None:
    out = ours(network, tensor(carphone_frame(), size), BLEND)
    assert out.shape == (1, 3, *size)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_float16_path(session: ort.InferenceSession) -> None:
    """float16, as on CUDA (here on the CPU): the normalisation statistics stay float32, so
    the result is within float16 rounding of the float32 reference."""
    network = MultiStyle.load(model_path("multistyle26.onnx")).eval().to(torch.float16)
    assert network.gamma.dtype == torch.float32
    x = tensor(carphone_frame())
    expected = reference(session, x, BLEND)
    with torch.inference_mode():
        got = network(x.half(), torch.from_numpy(BLEND))
    assert got.dtype == torch.float16
    assert np.abs(got.float().numpy() - expected).max() <= 1e-2


def test_bad_inputs_are_refused(network: MultiStyle) -> None:
    x = tensor(carphone_frame())
    with pytest.raises(ValueError, match="at least 32"):
        network(x[:, :, :31], torch.from_numpy(BLEND))
    with pytest.raises(ValueError, match="weights must be"):
        network(x, torch.zeros(25))
    with pytest.raises(ValueError, match="weights must be"):
        network(torch.cat([x, x, x]), torch.zeros(2, N_STYLES))


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "multistyle26.onnx"
    broken.write_bytes(model_path("multistyle26.onnx").read_bytes()[:100_000])
    with pytest.raises(ValueError, match=f"{broken}: not an ONNX model"):
        MultiStyle.load(broken)


def test_other_network_is_refused() -> None:
    path = model_path("arbitrary_transform.onnx")
    with pytest.raises(ValueError, match=str(path)):
        MultiStyle.load(path)


def test_misshapen_weight_is_named(tmp_path: Path) -> None:
    model = onnx.load(str(model_path("multistyle26.onnx")))
    for i, t in enumerate(model.graph.initializer):
        if t.name == "res.3.1.norm.gamma":
            value = onnx.numpy_helper.to_array(t)[:25]
            model.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(value, t.name))
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    with pytest.raises(
        ValueError, match=r"res\.3\.1\.norm\.gamma is float32 \[25, 32\], expected float32 \[26, 32\]"
    ):
        MultiStyle.load(path)
