"""The TFLite loader against the reference runtime (ai-edge-litert) on real frames.

The pose-landmark mask head ends in logits of magnitude ~1000, so float32 rounding alone moves
its probabilities by up to ~2e-3: on these frames litert's XNNPACK and reference kernels differ
from each other by up to 1.2e-3 and from exact (float64) arithmetic by up to 2e-3. Parity is
therefore checked with the torch module in float64 against litert's reference kernels, and
frameq's float32 is checked to stay within 1e-3 of exact.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from frameq.samples import sample_clip
from models.tflite import (
    ONEDNN_ACTIVATIONS,
    TensorInfo,
    TFLiteModule,
    UnsupportedModelError,
    _activation,
    _conv,
    _conv_fused,
    _kernel,
)
from models.weights import model_path


def real_frame(name: str, index: int) -> np.ndarray:
    with av.open(str(sample_clip(name))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("clip too short")


def fit(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    return torch.nn.functional.interpolate(tensor, size=(h, w), mode="bilinear")[0].permute(1, 2, 0).numpy()


def reference(path: str, x: np.ndarray) -> list[np.ndarray]:
    interpreter = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]


def ours(module: TFLiteModule, x: np.ndarray, dtype: torch.dtype = torch.float64) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = module.to(dtype)(torch.from_numpy(x).permute(0, 3, 1, 2).to(dtype))
    return [o.permute(0, 2, 3, 1).numpy() if o.dim() == 4 else o.numpy() for o in outputs]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -500, 500)))


FRAMES = [("carphone_pristine", 10), ("bigbuckbunny", 60), ("bikes", 30)]


@pytest.mark.parametrize(("clip", "index"), FRAMES)
def test_pose_detector_matches_reference(clip: str, index: int) -> None:
    path = str(model_path("pose_detection.tflite"))
    x = (fit(real_frame(clip, index), 224, 224) / 127.5 - 1.0)[None].astype(np.float32)
    (ref_boxes, ref_scores), (boxes, scores) = reference(path, x), ours(TFLiteModule(path), x)
    assert np.abs(sigmoid(scores) - sigmoid(ref_scores)).max() <= 1e-3
    assert np.abs(boxes - ref_boxes).max() <= 1e-2  # box offsets in input pixels (0..224)


@pytest.mark.parametrize("model", ["pose_landmark_full.tflite", "pose_landmark_heavy.tflite"])
@pytest.mark.parametrize(("clip", "index"), FRAMES)
def test_pose_landmark_matches_reference(clip: str, index: int, model: str) -> None:
    path = str(model_path(model))
    x = (fit(real_frame(clip, index), 256, 256) / 255.0)[None].astype(np.float32)
    ref, got = reference(path, x), ours(TFLiteModule(path), x)
    landmarks, presence, mask, heatmap, world = range(5)
    assert np.abs(got[presence] - ref[presence]).max() <= 1e-3  # already a probability
    assert np.abs(sigmoid(got[mask]) - sigmoid(ref[mask])).max() <= 2.5e-3  # litert's own rounding
    # pixels of the 256 crop: the heavy network is deep enough for litert's float32 to drift
    # ~0.01 px from exact arithmetic
    assert np.abs(got[landmarks] - ref[landmarks]).max() <= 2e-2
    assert np.abs(got[heatmap] - ref[heatmap]).max() <= 2e-2
    assert np.abs(got[world] - ref[world]).max() <= 1e-3  # metres
    single = ours(TFLiteModule(path), x, torch.float32)
    assert np.abs(sigmoid(single[mask]) - sigmoid(got[mask])).max() <= 1e-3


def test_face_detector_matches_reference() -> None:
    path = str(model_path("face_detection_short_range.tflite"))
    x = (fit(real_frame("carphone_pristine", 10), 128, 128) / 127.5 - 1.0)[None].astype(np.float32)
    (ref_boxes, ref_scores), (boxes, scores) = reference(path, x), ours(TFLiteModule(path), x)
    assert sigmoid(ref_scores).max() > 0.5  # there is a face in this frame
    assert np.abs(sigmoid(scores) - sigmoid(ref_scores)).max() <= 1e-3
    assert np.abs(boxes - ref_boxes).max() <= 1e-2


def test_batch_of_frames_equals_frames_one_by_one() -> None:
    module = TFLiteModule(model_path("pose_landmark_full.tflite"))
    x = np.stack([fit(real_frame(c, i), 256, 256) / 255.0 for c, i in FRAMES]).astype(np.float32)
    together = ours(module, x, torch.float32)
    for k in range(len(FRAMES)):
        alone = ours(module, x[k : k + 1], torch.float32)
        assert np.abs(together[2][k] - alone[2][0]).max() <= 1e-4


def test_unknown_operator_is_named() -> None:
    with pytest.raises(UnsupportedModelError, match="operator SQUARED_DIFFERENCE"):
        info = [TensorInfo("x", (1,), np.float32)]
        _kernel("SQUARED_DIFFERENCE", None, None, info, [], [0], {})  # type: ignore[arg-type]


@pytest.mark.parametrize("code", sorted(ONEDNN_ACTIVATIONS))
@pytest.mark.parametrize(("groups", "pads"), [(1, (1, 1, 1, 1)), (8, (0, 1, 0, 1))])
def test_a_conv_with_its_activation_fused_equals_the_two_apart(code: int, groups: int, pads: tuple) -> None:
    gen = torch.Generator().manual_seed(code)
    x = torch.randn(2, 8, 17, 20, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 8 // groups, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
    b = torch.randn(8, generator=gen)
    apart = _activation(code)(_conv(x, w, b, pads, (2, 2), (1, 1), groups))
    fused = _conv_fused(x, w, b, pads, (2, 2), (1, 1), groups, ONEDNN_ACTIVATIONS[code])
    assert fused.shape == apart.shape
    assert torch.allclose(fused, apart, atol=1e-5)
